"""The registry of deployments and services: a pure, immutable model.

Everything here is free of I/O. A `Registry` value is never mutated: registering or
removing a deployment returns a new value, which the admin API persists and then swaps
in whole, so readers (ingress, invoker) only ever hold a consistent snapshot.

The behaviour mirrors the official server 1.7.12, learned by running it:

- A deployment is identified by the authority and path of its URI (the scheme and the
  additional headers do not matter). Registering a known URI without ``force`` answers
  with the stored deployment, unchanged and without discovery; with ``force`` the
  deployment keeps its id and its services are replaced.
- Every service registered anew gets revision = latest revision + 1 (or 1). The latest
  revision of a service, across all deployments, is the one the ingress routes to.
- Changing a service's type needs ``breaking`` (or ``force``), else 409 META0006.
- Manifests are decoded strictly (unknown fields, bad types, bad names are refused) and
  the error texts are those of the official server's JSON decoder, positions included.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pyrestate.core.ids import deployment_id as _encode_deployment_id

# Service protocol versions pyrestate can speak with a deployment.
SUPPORTED_PROTOCOL_VERSIONS = range(5, 7)

ServiceType = Literal["Service", "VirtualObject", "Workflow"]
HandlerType = Literal["Exclusive", "Shared", "Workflow"]
ProtocolType = Literal["BidiStream", "RequestResponse"]
HttpVersion = Literal["HTTP/2.0", "HTTP/1.1"]
OnMaxAttempts = Literal["Pause", "Kill"]

# Server defaults (official configuration defaults), in milliseconds.
DEFAULT_IDEMPOTENCY_RETENTION_MS = 24 * 3600 * 1000
DEFAULT_JOURNAL_RETENTION_MS = 24 * 3600 * 1000
DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS = 24 * 3600 * 1000
DEFAULT_INACTIVITY_TIMEOUT_MS = 60 * 1000
DEFAULT_ABORT_TIMEOUT_MS = 600 * 1000

_MANIFEST_SERVICE_TYPES: dict[str, ServiceType] = {
    "SERVICE": "Service",
    "VIRTUAL_OBJECT": "VirtualObject",
    "WORKFLOW": "Workflow",
}
_MANIFEST_HANDLER_TYPES: dict[str, HandlerType] = {
    "EXCLUSIVE": "Exclusive",
    "SHARED": "Shared",
    "WORKFLOW": "Workflow",
}


# --------------------------------------------------------------------------------------
# Errors


class AdminError(Exception):
    """An error the admin API answers as ``{"message": ..., "restate_code": ...}``."""

    def __init__(self, status: int, message: str, restate_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.restate_code = restate_code

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "restate_code": self.restate_code}


def schema_error(status: int, message: str, code: str | None = None) -> AdminError:
    """A registration refused by the schema rules; the official prefixes the code once."""
    return AdminError(status, f"[{code}] {message}" if code else message, code)


class ServiceNotFound(LookupError):
    def __init__(self, service: str) -> None:
        super().__init__(
            f"service '{service}' not found, make sure to register the service before calling it."
        )
        self.service = service

    def __str__(self) -> str:
        return str(self.args[0])


class HandlerNotFound(LookupError):
    def __init__(self, service: str, handler: str) -> None:
        super().__init__(
            f"the service '{service}' exists, but the handler '{handler}' was not found, "
            "check that the handler exists in the latest registered service version."
        )
        self.service = service
        self.handler = handler

    def __str__(self) -> str:
        return str(self.args[0])


class DeploymentNotFound(LookupError):
    def __init__(self, deployment_id: str) -> None:
        super().__init__(f"The requested deployment '{deployment_id}' does not exist")
        self.deployment_id = deployment_id

    def __str__(self) -> str:
        return str(self.args[0])


# --------------------------------------------------------------------------------------
# Durations and ids


_DURATION_UNITS = (
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("µs", 1_000),
    ("ns", 1),
)


def format_duration_ns(ns: int) -> str:
    """The official "friendly" compact form: days as the largest unit, e.g. ``1d 12h``."""
    parts = []
    for unit, size in _DURATION_UNITS:
        count, ns = divmod(ns, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts) if parts else "0s"


def format_duration(ms: int) -> str:
    return format_duration_ns(ms * 1_000_000)


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


_B62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_B62_INDEX = {c: i for i, c in enumerate(_B62)}
_ID_PREFIXES = frozenset({"inv", "dp", "sub", "prom", "sign", "snap", "mut", "vq"})
_U128_DIGITS = 22


def new_deployment_id(timestamp_ms: int, random80: int) -> str:
    """A ULID (48-bit ms timestamp, 80 random bits) in the official ``dp_1…`` form."""
    raw = ((timestamp_ms & (2**48 - 1)) << 80 | (random80 & (2**80 - 1))).to_bytes(16, "big")
    return _encode_deployment_id(raw)


def deployment_id_error(text: str) -> str | None:
    """Why ``text`` is not a deployment id (the official decoder's words), or None."""
    if not text:
        return "bad length"
    prefix, sep, rest = text.partition("_")
    if not sep:
        return "bad format"
    if prefix not in _ID_PREFIXES:
        return f"unrecognized resource type: {prefix}"
    if not rest:
        return "bad length"
    if rest[0] != "1":
        return "unrecognized codec version"
    if prefix != "dp":
        return "id doesn't match the expected type"
    digits = rest[1 : 1 + _U128_DIGITS]
    if len(digits) < _U128_DIGITS:
        return "bad length"
    value = 0
    for c in digits.lstrip("0"):
        d = _B62_INDEX.get(c)
        if d is None:
            return "base62 decode error"
        value = value * 62 + d
    if value >= 2**128:
        return "base62 decode error"
    if len(rest) > 1 + _U128_DIGITS:
        return "bad length"
    return None


# --------------------------------------------------------------------------------------
# JSON with positions, and the official decoder's error texts


class JsonSyntaxError(ValueError):
    """Malformed JSON; ``str()`` is the official decoder's text (serde_json)."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{message} at line {line} column {column}")
        self.reason = message
        self.line = line
        self.column = column


class JsonDecodeError(ValueError):
    """Well-formed JSON of the wrong shape; same textual conventions as JsonSyntaxError."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"{message} at line {line} column {column}")
        self.reason = message
        self.line = line
        self.column = column


@dataclass(slots=True)
class JsonNode:
    """A parsed JSON value with its byte span, so decode errors can point at it.

    ``kind`` is one of null, bool, int, float, str, seq, map. For ``seq`` the value is a
    list of nodes; for ``map`` a list of (key, end-of-key offset, node).
    """

    kind: str
    value: Any
    start: int
    end: int

    def to_python(self) -> Any:
        if self.kind == "seq":
            return [n.to_python() for n in self.value]
        if self.kind == "map":
            return {k: n.to_python() for k, _, n in self.value}
        return self.value


_WS = b" \t\n\r"
_ESCAPES = {
    ord('"'): '"',
    ord("\\"): "\\",
    ord("/"): "/",
    ord("b"): "\b",
    ord("f"): "\f",
    ord("n"): "\n",
    ord("r"): "\r",
    ord("t"): "\t",
}
_PLAIN_STRING = re.compile(rb'[^"\\\x00-\x1f]*')
_MAX_DEPTH = 128
_CONTROL_CHARACTER = "control character (\\u0000-\\u001F) found while parsing a string"


def _line_col(data: bytes, index: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, index) + 1
    column = index - (data.rfind(b"\n", 0, index) + 1)
    return line, column


class _JsonParser:
    """A strict JSON parser reporting errors where and how serde_json does.

    Offsets follow serde_json: errors found while looking at the next byte point one
    past it ("peek" errors), errors about something consumed point at its end.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.i = 0
        self.depth = 0

    def fail(self, message: str, index: int) -> JsonSyntaxError:
        line, col = _line_col(self.data, index)
        return JsonSyntaxError(message, line, col)

    def peek_fail(self, message: str) -> JsonSyntaxError:
        return self.fail(message, min(self.i + 1, len(self.data)))

    def skip_ws(self) -> int | None:
        data, i = self.data, self.i
        while i < len(data) and data[i] in _WS:
            i += 1
        self.i = i
        return data[i] if i < len(data) else None

    def parse_document(self) -> JsonNode:
        node = self.parse_value()
        if self.skip_ws() is not None:
            raise self.peek_fail("trailing characters")
        return node

    def parse_value(self) -> JsonNode:
        c = self.skip_ws()
        if c is None:
            raise self.peek_fail("EOF while parsing a value")
        start = self.i
        if c == ord('"'):
            return JsonNode("str", self.parse_string(), start, self.i)
        if c == ord("{"):
            return self.parse_map()
        if c == ord("["):
            return self.parse_seq()
        if c == ord("n"):
            self.parse_ident(b"null")
            return JsonNode("null", None, start, self.i)
        if c == ord("t"):
            self.parse_ident(b"true")
            return JsonNode("bool", True, start, self.i)
        if c == ord("f"):
            self.parse_ident(b"false")
            return JsonNode("bool", False, start, self.i)
        if c == ord("-") or 0x30 <= c <= 0x39:
            return self.parse_number()
        raise self.peek_fail("expected value")

    def parse_ident(self, word: bytes) -> None:
        data = self.data
        self.i += 1
        for expected in word[1:]:
            if self.i >= len(data):
                raise self.fail("EOF while parsing a value", self.i)
            got = data[self.i]
            self.i += 1
            if got != expected:
                raise self.fail("expected ident", self.i)

    def parse_number(self) -> JsonNode:
        data, start = self.data, self.i
        i = start + 1 if data[start] == ord("-") else start

        def digit_at(k: int) -> bool:
            return k < len(data) and 0x30 <= data[k] <= 0x39

        def bad(k: int) -> JsonSyntaxError:
            # serde_json reports the byte that cannot continue the number, once consumed.
            if k >= len(data):
                return self.fail("EOF while parsing a value", len(data))
            return self.fail("invalid number", k + 1)

        if not digit_at(i):
            raise bad(i)
        if data[i] == ord("0"):
            i += 1
            if digit_at(i):
                raise bad(i)
        while digit_at(i):
            i += 1
        is_float = False
        if i < len(data) and data[i] == ord("."):
            is_float = True
            i += 1
            if not digit_at(i):
                raise bad(i)
            while digit_at(i):
                i += 1
        if i < len(data) and data[i] in b"eE":
            is_float = True
            i += 1
            if i < len(data) and data[i] in b"+-":
                i += 1
            if not digit_at(i):
                raise bad(i)
            while digit_at(i):
                i += 1
        self.i = i
        text = data[start:i]
        if is_float:
            value = float(text)
            if math.isinf(value):
                raise self.fail("number out of range", i)
            return JsonNode("float", value, start, i)
        ivalue = int(text)
        if ivalue > 2**64 - 1 or ivalue < -(2**63):
            return JsonNode("float", float(ivalue), start, i)
        return JsonNode("int", ivalue, start, i)

    def parse_string(self) -> str:
        data = self.data
        self.i += 1  # opening quote
        chunks: list[str] = []
        while True:
            m = _PLAIN_STRING.match(data, self.i)
            assert m is not None
            if m.end() > self.i:
                try:
                    chunks.append(m.group(0).decode("utf-8"))
                except UnicodeDecodeError:
                    raise self.fail("invalid unicode code point", m.end()) from None
                self.i = m.end()
            if self.i >= len(data):
                raise self.fail("EOF while parsing a string", self.i)
            c = data[self.i]
            self.i += 1
            if c == ord('"'):
                return "".join(chunks)
            if c == ord("\\"):
                chunks.append(self.parse_escape())
            else:
                raise self.fail(_CONTROL_CHARACTER, self.i)

    def parse_escape(self) -> str:
        data = self.data
        if self.i >= len(data):
            raise self.fail("EOF while parsing a string", self.i)
        c = data[self.i]
        self.i += 1
        simple = _ESCAPES.get(c)
        if simple is not None:
            return simple
        if c != ord("u"):
            raise self.fail("invalid escape", self.i)
        code = self.hex4()
        if 0xDC00 <= code <= 0xDFFF:
            raise self.fail("lone leading surrogate in hex escape", self.i)
        if 0xD800 <= code <= 0xDBFF:
            if data[self.i : self.i + 2] != b"\\u":
                raise self.fail("unexpected end of hex escape", min(self.i + 1, len(data)))
            self.i += 2
            low = self.hex4()
            if not 0xDC00 <= low <= 0xDFFF:
                raise self.fail("lone leading surrogate in hex escape", self.i)
            code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
        return chr(code)

    def hex4(self) -> int:
        digits = self.data[self.i : self.i + 4]
        if len(digits) < 4:
            self.i = len(self.data)
            raise self.fail("EOF while parsing a string", self.i)
        for k, b in enumerate(digits):
            if chr(b) not in "0123456789abcdefABCDEF":
                self.i += k + 1
                raise self.fail("invalid escape", self.i)
        self.i += 4
        return int(digits, 16)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.fail("recursion limit exceeded", self.i + 1)

    def parse_seq(self) -> JsonNode:
        start = self.i
        self.enter()
        self.i += 1
        items: list[JsonNode] = []
        c = self.skip_ws()
        if c is None:
            raise self.peek_fail("EOF while parsing a list")
        if c == ord("]"):
            self.i += 1
            self.depth -= 1
            return JsonNode("seq", items, start, self.i)
        while True:
            items.append(self.parse_value())
            c = self.skip_ws()
            if c == ord(","):
                self.i += 1
                if self.skip_ws() == ord("]"):
                    raise self.peek_fail("trailing comma")
                continue
            if c == ord("]"):
                self.i += 1
                self.depth -= 1
                return JsonNode("seq", items, start, self.i)
            if c is None:
                raise self.peek_fail("EOF while parsing a list")
            raise self.peek_fail("expected `,` or `]`")

    def parse_map(self) -> JsonNode:
        start = self.i
        self.enter()
        self.i += 1
        entries: list[tuple[str, int, JsonNode]] = []
        c = self.skip_ws()
        if c == ord("}"):
            self.i += 1
            self.depth -= 1
            return JsonNode("map", entries, start, self.i)
        if c is None:
            raise self.peek_fail("EOF while parsing an object")
        while True:
            if c is None:
                # Only reachable after a comma: serde_json then expects a value.
                raise self.peek_fail("EOF while parsing a value")
            if c != ord('"'):
                raise self.peek_fail("key must be a string")
            key = self.parse_string()
            key_end = self.i
            c = self.skip_ws()
            if c is None:
                raise self.peek_fail("EOF while parsing an object")
            if c != ord(":"):
                raise self.peek_fail("expected `:`")
            self.i += 1
            entries.append((key, key_end, self.parse_value()))
            c = self.skip_ws()
            if c == ord(","):
                self.i += 1
                c = self.skip_ws()
                if c == ord("}"):
                    raise self.peek_fail("trailing comma")
                continue
            if c == ord("}"):
                self.i += 1
                self.depth -= 1
                return JsonNode("map", entries, start, self.i)
            if c is None:
                raise self.peek_fail("EOF while parsing an object")
            raise self.peek_fail("expected `,` or `}`")


def parse_json_node(data: bytes) -> JsonNode:
    """Parse a whole JSON document, raising JsonSyntaxError with serde_json's wording."""
    return _JsonParser(data).parse_document()


def parse_json(data: bytes) -> Any:
    return parse_json_node(data).to_python()


def parse_json_value(data: bytes) -> tuple[JsonNode, JsonSyntaxError | None]:
    """Parse the leading JSON value; also return the error for what trails it, if any.

    Typed decoding in the official server looks at the value before complaining about
    trailing bytes, so callers check the value first and raise the second error after.
    """
    parser = _JsonParser(data)
    node = parser.parse_value()
    trailing = parser.peek_fail("trailing characters") if parser.skip_ws() is not None else None
    return node, trailing


def _rust_debug_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _unexpected(node: JsonNode) -> str:
    """How serde names a value it did not expect."""
    if node.kind == "null":
        return "null"
    if node.kind == "bool":
        return f"boolean `{'true' if node.value else 'false'}`"
    if node.kind == "int":
        return f"integer `{node.value}`"
    if node.kind == "float":
        return f"floating point `{node.value!r}`"
    if node.kind == "str":
        return f"string {_rust_debug_str(node.value)}"
    if node.kind == "seq":
        return "sequence"
    return "map"


def _one_of(names: Iterable[str]) -> str:
    items = [f"`{n}`" for n in names]
    if not items:
        return "there are no fields"
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} or {items[1]}"
    return "one of " + ", ".join(items)


# Manifest decoding. Field specs name what the official decoder expects; structs deny
# unknown fields and list their fields alphabetically in errors.

_SERVICE_NAME_PATTERN = "^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*$"
_HANDLER_NAME_PATTERN = "^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*$"

_U64 = ("u64",)
_NZ_U64 = ("nzu64",)
_STR = ("str",)
_BOOL = ("bool",)
_F64 = ("f64",)
_STR_MAP = ("strmap",)
_ANY = ("any",)
_ON_MAX = ("enum", ("PAUSE", "KILL"))

_RETRY_FIELDS = {
    "retryPolicyExponentiationFactor": _F64,
    "retryPolicyInitialInterval": _U64,
    "retryPolicyMaxAttempts": _U64,
    "retryPolicyMaxInterval": _U64,
    "retryPolicyOnMaxAttempts": _ON_MAX,
}

# name -> (fields: name -> spec, required fields)
_STRUCTS: dict[str, tuple[dict[str, tuple[Any, ...]], tuple[str, ...]]] = {
    "Endpoint": (
        {
            "lambdaCompression": ("enum", ("zstd",)),
            "maxProtocolVersion": _NZ_U64,
            "minProtocolVersion": _NZ_U64,
            "protocolMode": ("enum", ("BIDI_STREAM", "REQUEST_RESPONSE")),
            "services": ("seq", ("struct", "Service")),
        },
        ("maxProtocolVersion", "minProtocolVersion", "services"),
    ),
    "Service": (
        {
            "abortTimeout": _U64,
            "documentation": _STR,
            "enableLazyState": _BOOL,
            "handlers": ("seq", ("struct", "Handler")),
            "idempotencyRetention": _U64,
            "inactivityTimeout": _U64,
            "ingressPrivate": _BOOL,
            "journalRetention": _U64,
            "metadata": _STR_MAP,
            "name": ("pattern", _SERVICE_NAME_PATTERN),
            **_RETRY_FIELDS,
            "ty": ("enum", ("VIRTUAL_OBJECT", "SERVICE", "WORKFLOW")),
        },
        ("handlers", "name", "ty"),
    ),
    "Handler": (
        {
            "abortTimeout": _U64,
            "documentation": _STR,
            "enableLazyState": _BOOL,
            "idempotencyRetention": _U64,
            "inactivityTimeout": _U64,
            "ingressPrivate": _BOOL,
            "input": ("struct", "InputPayload"),
            "journalRetention": _U64,
            "metadata": _STR_MAP,
            "name": ("pattern", _HANDLER_NAME_PATTERN),
            "output": ("struct", "OutputPayload"),
            **_RETRY_FIELDS,
            "ty": ("enum", ("WORKFLOW", "EXCLUSIVE", "SHARED")),
            "workflowCompletionRetention": _U64,
        },
        ("name",),
    ),
    "InputPayload": (
        {"contentType": _STR, "jsonSchema": _ANY, "required": _BOOL},
        (),
    ),
    "OutputPayload": (
        {"contentType": _STR, "jsonSchema": _ANY, "setContentTypeIfEmpty": _BOOL},
        (),
    ),
}


def _nullable(field: str, required: tuple[str, ...]) -> bool:
    # Optional fields are Option<…> in the official model (null = absent), except maps.
    return field not in required and field != "metadata"


class _ManifestDecoder:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def fail(self, message: str, index: int) -> JsonDecodeError:
        line, col = _line_col(self.data, index)
        return JsonDecodeError(message, line, col)

    def custom_end(self, node: JsonNode) -> int:
        # serde_json places custom errors after trying to close the enclosing object:
        # a directly following `}` is consumed first.
        i = node.end
        while i < len(self.data) and self.data[i] in _WS:
            i += 1
        return i + 1 if i < len(self.data) and self.data[i] == ord("}") else node.end

    def invalid_type(self, node: JsonNode, expected: str) -> JsonDecodeError:
        # Containers are reported where they start, scalars where they end.
        index = node.start if node.kind in ("seq", "map") else node.end
        return self.fail(f"invalid type: {_unexpected(node)}, expected {expected}", index)

    def value(self, node: JsonNode, spec: tuple[Any, ...], nullable: bool) -> Any:
        kind = spec[0]
        if node.kind == "null" and nullable and kind != "any":
            return None
        if kind == "any":
            return None if node.kind == "null" else node.to_python()
        if kind in ("u64", "nzu64"):
            expected = "u64" if kind == "u64" else "a nonzero u64"
            if node.kind == "int":
                if node.value < 0:
                    raise self.fail(
                        f"invalid value: integer `{node.value}`, expected {expected}", node.end
                    )
                if kind == "nzu64" and node.value == 0:
                    raise self.fail(f"invalid value: integer `0`, expected {expected}", node.end)
                return node.value
            raise self.invalid_type(node, expected)
        if kind == "f64":
            if node.kind in ("int", "float"):
                return float(node.value)
            raise self.invalid_type(node, "f64")
        if kind == "str":
            if node.kind == "str":
                return node.value
            raise self.invalid_type(node, "a string")
        if kind == "bool":
            if node.kind == "bool":
                return node.value
            raise self.invalid_type(node, "a boolean")
        if kind == "pattern":
            if node.kind != "str":
                raise self.invalid_type(node, "a string")
            if not re.fullmatch(spec[1], node.value):
                raise self.fail(f'doesn\'t match pattern "{spec[1]}"', self.custom_end(node))
            return node.value
        if kind == "enum":
            if node.kind != "str":
                # serde_json refuses non-string unit variants before looking at them.
                line, col = _line_col(self.data, min(node.start + 1, len(self.data)))
                raise JsonDecodeError("expected value", line, col)
            if node.value not in spec[1]:
                raise self.fail(
                    f"unknown variant `{node.value}`, expected {_one_of(spec[1])}", node.end
                )
            return node.value
        if kind == "strmap":
            if node.kind != "map":
                raise self.invalid_type(node, "a map")
            out: dict[str, str] = {}
            for key, _, child in node.value:
                if child.kind != "str":
                    raise self.invalid_type(child, "a string")
                out[key] = child.value
            return out
        if kind == "seq":
            if node.kind != "seq":
                raise self.invalid_type(node, "a sequence")
            return [self.value(child, spec[1], False) for child in node.value]
        if kind == "struct":
            return self.struct(node, spec[1])
        raise AssertionError(spec)

    def struct(self, node: JsonNode, name: str) -> dict[str, Any]:
        fields, required = _STRUCTS[name]
        out: dict[str, Any] = {}
        if node.kind == "seq":
            # serde also accepts a struct written as an array of its fields, in order.
            names = list(fields)
            if len(node.value) > len(names):
                raise self.fail("trailing characters", node.end)
            for fname, child in zip(names, node.value, strict=False):
                out[fname] = self.value(child, fields[fname], _nullable(fname, required))
            if len(node.value) < len(required):
                raise self.fail(
                    f"invalid length {len(node.value)}, expected struct {name} "
                    f"with {len(names)} elements",
                    node.end,
                )
            return out
        if node.kind != "map":
            raise self.invalid_type(node, f"struct {name}")
        for key, key_end, child in node.value:
            spec = fields.get(key)
            if spec is None:
                raise self.fail(f"unknown field `{key}`, expected {_one_of(fields)}", key_end)
            if key in out:
                raise self.fail(f"duplicate field `{key}`", key_end)
            out[key] = self.value(child, spec, _nullable(key, required))
        for fname in required:
            if fname not in out:
                raise self.fail(f"missing field `{fname}`", node.end)
        return out


def decode_manifest(data: bytes) -> dict[str, Any]:
    """Decode an endpoint manifest (discovery protocol v1-v4) strictly.

    Raises JsonSyntaxError / JsonDecodeError with the official decoder's wording. The
    result is plain JSON data with every field checked; optional fields may be absent.
    """
    node = parse_json_node(data)
    return _ManifestDecoder(data).struct(node, "Endpoint")


# --------------------------------------------------------------------------------------
# Handler input and output rules


@dataclass(frozen=True, slots=True)
class ContentTypeMatcher:
    """A declared input content type; ``type``/``subtype`` None mean a wildcard."""

    type: str | None
    subtype: str | None

    @staticmethod
    def parse(text: str) -> ContentTypeMatcher:
        """Raises ValueError with the official reason."""
        first, sep, second = text.strip().partition("/")
        if not sep:
            raise ValueError(f"can't parse the content-type '{text}': must contain one /")
        if first == "*" and second == "*":
            return ContentTypeMatcher(None, None)
        if first == "*":
            raise ValueError(
                f"can't parse the content-type '{text}': "
                "the wildcard format */subType is not supported"
            )
        if second == "*":
            return ContentTypeMatcher(first, None)
        return ContentTypeMatcher(first, second)

    def __str__(self) -> str:
        return f"{self.type or '*'}/{self.subtype or '*'}"

    def mismatch(self, content_type: str) -> str | None:
        if self.type is None:
            return None
        # Parameters are ignored; the comparison itself is exact (case-sensitive).
        first, sep, second = content_type.split(";", 1)[0].strip().partition("/")
        if sep and first == self.type and (self.subtype is None or second == self.subtype):
            return None
        return f"Content-type '{content_type}' does not match '{self}'"


def _json_title(schema: Any) -> str | None:
    if isinstance(schema, dict):
        title = schema.get("title")
        if isinstance(title, str):
            return f"JSON '{title}'"
        ty = schema.get("type")
        if isinstance(ty, str):
            return f"JSON {ty}"
    return None


@dataclass(frozen=True, slots=True)
class InputRule:
    """One way a request body may be acceptable; a body passes if any rule passes."""

    kind: Literal["none", "content_type", "json"]
    content_type: ContentTypeMatcher | None = None
    json_schema: Any = None

    def __str__(self) -> str:
        if self.kind == "none":
            return "none"
        if self.kind == "json":
            return _json_title(self.json_schema) or str(self.content_type)
        return str(self.content_type)

    def check(self, content_type: str | None, body: bytes) -> str | None:
        if self.kind == "none":
            if body or content_type is not None:
                shown = "None" if content_type is None else f"Some({_rust_debug_str(content_type)})"
                return (
                    "Expected body and content-type to be empty, "
                    f"but wasn't with content-type '{shown}'"
                )
            return None
        if content_type is None:
            return "Empty content-type"
        assert self.content_type is not None
        problem = self.content_type.mismatch(content_type)
        if problem is not None:
            return problem
        if self.kind == "json" and not body:
            return "Empty body not allowed"
        return None


_DEFAULT_INPUT_RULES = (
    InputRule("none"),
    InputRule("content_type", ContentTypeMatcher(None, None)),
)


def _describe_input(rules: tuple[InputRule, ...]) -> str:
    if not rules:
        return "<invalid rules>"
    if len(rules) == 1:
        return str(rules[0])
    none = InputRule("none")
    if len(rules) == 2 and none in rules:
        return str(rules[1] if rules[0] == none else rules[0])
    return "one of [" + ", ".join(f'"{r}"' for r in rules) + "]"


@dataclass(frozen=True, slots=True)
class OutputRules:
    content_type: str | None = "application/json"
    set_content_type_if_empty: bool = False
    json_schema: Any = None

    def __str__(self) -> str:
        title = _json_title(self.json_schema)
        if title is not None:
            return title
        if self.content_type is None:
            return "none"
        return ("optional " if self.set_content_type_if_empty else "") + self.content_type

    def content_type_for(self, output_is_empty: bool) -> str | None:
        """The content-type of a response carrying this handler's output."""
        if self.content_type is None or (output_is_empty and not self.set_content_type_if_empty):
            return None
        return self.content_type


# --------------------------------------------------------------------------------------
# Retry policies


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """An effective retry policy. Intervals in seconds; max_attempts None = unlimited."""

    initial_interval_s: float
    exponentiation_factor: float
    max_attempts: int | None
    max_interval_s: float | None
    on_max_attempts: OnMaxAttempts
    # Exact values for rendering.
    initial_interval_ms: int = 0
    max_interval_ms: int | None = None


DEFAULT_RETRY_POLICY = RetryPolicy(
    initial_interval_s=0.5,
    exponentiation_factor=2.0,
    max_attempts=70,
    max_interval_s=60.0,
    on_max_attempts="Pause",
    initial_interval_ms=500,
    max_interval_ms=60_000,
)


@dataclass(frozen=True, slots=True)
class RetryOverrides:
    """Retry settings a service or handler declares; None = not set there."""

    initial_interval_ms: int | None = None
    exponentiation_factor: float | None = None
    max_attempts: int | None = None
    max_interval_ms: int | None = None
    on_max_attempts: OnMaxAttempts | None = None

    def apply_to(self, base: RetryPolicy) -> RetryPolicy:
        initial = base.initial_interval_ms
        if self.initial_interval_ms is not None:
            initial = self.initial_interval_ms
        max_interval = base.max_interval_ms
        if self.max_interval_ms is not None:
            max_interval = self.max_interval_ms
        return RetryPolicy(
            initial_interval_s=initial / 1000,
            exponentiation_factor=(
                base.exponentiation_factor
                if self.exponentiation_factor is None
                else self.exponentiation_factor
            ),
            max_attempts=base.max_attempts if self.max_attempts is None else self.max_attempts,
            max_interval_s=_seconds(max_interval),
            on_max_attempts=base.on_max_attempts
            if self.on_max_attempts is None
            else self.on_max_attempts,
            initial_interval_ms=initial,
            max_interval_ms=max_interval,
        )

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__ if getattr(self, k) is not None}

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> RetryOverrides:
        return RetryOverrides(**d)


def _f32(value: float) -> float:
    """The value as the official server stores it (f32), printed shortest."""
    try:
        single = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return value
    for precision in range(1, 10):
        candidate = float(f"{single:.{precision}g}")
        if struct.unpack("f", struct.pack("f", candidate))[0] == single:
            return candidate
    return single


def _retry_overrides(m: Mapping[str, Any]) -> RetryOverrides:
    attempts = m.get("retryPolicyMaxAttempts")
    factor = m.get("retryPolicyExponentiationFactor")
    on_max = m.get("retryPolicyOnMaxAttempts")
    return RetryOverrides(
        initial_interval_ms=m.get("retryPolicyInitialInterval"),
        exponentiation_factor=None if factor is None else _f32(factor),
        # Zero attempts means "just the first one", as officially.
        max_attempts=None if attempts is None else max(attempts, 1),
        max_interval_ms=m.get("retryPolicyMaxInterval"),
        on_max_attempts=None if on_max is None else ("Pause" if on_max == "PAUSE" else "Kill"),
    )


# --------------------------------------------------------------------------------------
# Schemas


@dataclass(frozen=True, slots=True)
class HandlerSchema:
    name: str
    ty: HandlerType | None
    public: bool  # effective: the handler's own setting, else the service's
    input_rules: tuple[InputRule, ...] = _DEFAULT_INPUT_RULES
    output_rules: OutputRules = OutputRules()
    documentation: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    public_override: bool | None = None
    idempotency_retention_ms: int | None = None
    workflow_completion_retention_ms: int | None = None
    journal_retention_ms: int | None = None
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    enable_lazy_state: bool | None = None
    retry: RetryOverrides = RetryOverrides()

    def check_input(self, content_type: str | None, body: bytes) -> str | None:
        """None if the request body is acceptable, else the official 400 message."""
        problem = "Bad configuration of the input validation rules"
        for rule in self.input_rules:
            problem = rule.check(content_type, body)
            if problem is None:
                return None
        return f"input validation error: {problem}"

    @property
    def output_content_type(self) -> str | None:
        """The declared output content-type (for a non-empty output)."""
        return self.output_rules.content_type

    @property
    def input_description(self) -> str:
        return _describe_input(self.input_rules)

    @property
    def output_description(self) -> str:
        return str(self.output_rules)

    @property
    def input_json_schema(self) -> Any:
        for rule in self.input_rules:
            if rule.kind == "json":
                return rule.json_schema
        return None

    @property
    def inactivity_timeout_s(self) -> float | None:
        return _seconds(self.inactivity_timeout_ms)

    @property
    def abort_timeout_s(self) -> float | None:
        return _seconds(self.abort_timeout_ms)


@dataclass(frozen=True, slots=True)
class ServiceSchema:
    """One revision of a service, as exposed by one deployment."""

    name: str
    ty: ServiceType
    handlers: Mapping[str, HandlerSchema]
    deployment_id: str
    revision: int
    public: bool = True
    documentation: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # As declared by the service (None = server default).
    idempotency_retention_ms: int | None = None
    workflow_completion_retention_ms: int | None = None
    journal_retention_ms: int | None = None
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    enable_lazy_state_override: bool | None = None
    retry: RetryOverrides = RetryOverrides()

    # --- effective values (service level), seconds for the engine

    @property
    def enable_lazy_state(self) -> bool:
        return bool(self.enable_lazy_state_override)

    @property
    def effective_idempotency_retention_ms(self) -> int:
        if self.idempotency_retention_ms is None:
            return DEFAULT_IDEMPOTENCY_RETENTION_MS
        return self.idempotency_retention_ms

    @property
    def effective_journal_retention_ms(self) -> int:
        if self.journal_retention_ms is None:
            return DEFAULT_JOURNAL_RETENTION_MS
        return self.journal_retention_ms

    @property
    def effective_workflow_completion_retention_ms(self) -> int | None:
        """Only workflows have one: the workflow handler's, the service's, or the default."""
        if self.ty != "Workflow":
            return None
        for h in self.handlers.values():
            if h.workflow_completion_retention_ms is not None:
                return h.workflow_completion_retention_ms
        if self.workflow_completion_retention_ms is not None:
            return self.workflow_completion_retention_ms
        return DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS

    @property
    def effective_inactivity_timeout_ms(self) -> int:
        if self.inactivity_timeout_ms is None:
            return DEFAULT_INACTIVITY_TIMEOUT_MS
        return self.inactivity_timeout_ms

    @property
    def effective_abort_timeout_ms(self) -> int:
        if self.abort_timeout_ms is None:
            return DEFAULT_ABORT_TIMEOUT_MS
        return self.abort_timeout_ms

    @property
    def idempotency_retention_s(self) -> float:
        return self.effective_idempotency_retention_ms / 1000

    @property
    def journal_retention_s(self) -> float:
        return self.effective_journal_retention_ms / 1000

    @property
    def workflow_completion_retention_s(self) -> float | None:
        return _seconds(self.effective_workflow_completion_retention_ms)

    @property
    def inactivity_timeout_s(self) -> float:
        return self.effective_inactivity_timeout_ms / 1000

    @property
    def abort_timeout_s(self) -> float:
        return self.effective_abort_timeout_ms / 1000

    @property
    def retry_policy(self) -> RetryPolicy:
        """The service-level policy: server default with the service's overrides."""
        return self.retry.apply_to(DEFAULT_RETRY_POLICY)

    def handler_retry_policy(self, handler: str) -> RetryPolicy:
        """Default, then service, then handler overrides (what an invocation uses)."""
        policy = self.retry_policy
        h = self.handlers.get(handler)
        return policy if h is None else h.retry.apply_to(policy)

    def handler_options(self, handler: str) -> InvocationOptions:
        """What running an invocation of ``handler`` on this revision needs to know."""
        h = self.handlers[handler]
        if h.ty == "Workflow":
            completion = _first(
                h.workflow_completion_retention_ms,
                self.workflow_completion_retention_ms,
                DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS,
            )
        else:
            completion = _first(
                h.idempotency_retention_ms,
                self.idempotency_retention_ms,
                DEFAULT_IDEMPOTENCY_RETENTION_MS,
            )
        journal = _first(
            h.journal_retention_ms, self.journal_retention_ms, DEFAULT_JOURNAL_RETENTION_MS
        )
        lazy = h.enable_lazy_state
        if lazy is None:
            lazy = self.enable_lazy_state_override
        return InvocationOptions(
            public=h.public,
            completion_retention_s=completion / 1000,
            journal_retention_s=journal / 1000,
            inactivity_timeout_s=_seconds(
                _first(h.inactivity_timeout_ms, self.inactivity_timeout_ms)
            ),
            abort_timeout_s=_seconds(_first(h.abort_timeout_ms, self.abort_timeout_ms)),
            enable_lazy_state=bool(lazy),
            retry_policy=self.handler_retry_policy(handler),
        )


def _first(*values: int | None) -> Any:
    for v in values:
        if v is not None:
            return v
    return None


@dataclass(frozen=True, slots=True)
class InvocationOptions:
    """Per-handler settings for the engine. Timeouts None = the invoker's defaults."""

    public: bool
    completion_retention_s: float
    journal_retention_s: float
    inactivity_timeout_s: float | None
    abort_timeout_s: float | None
    enable_lazy_state: bool
    retry_policy: RetryPolicy


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    uri: str
    protocol_type: ProtocolType
    http_version: HttpVersion
    min_protocol_version: int
    max_protocol_version: int
    created_at_ms: int
    services: Mapping[str, ServiceSchema]
    additional_headers: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    sdk_version: str | None = None

    @property
    def protocol_version(self) -> int:
        """The service protocol version pyrestate speaks with this deployment."""
        return negotiate_protocol_version(self.min_protocol_version, self.max_protocol_version)

    def same_endpoint(self, uri: str) -> bool:
        return _endpoint_key(self.uri) == _endpoint_key(uri)


def negotiate_protocol_version(min_version: int, max_version: int) -> int:
    supported = SUPPORTED_PROTOCOL_VERSIONS
    return max(min(max_version, supported[-1]), supported[0])


def protocol_versions_acceptable(min_version: int, max_version: int) -> bool:
    supported = SUPPORTED_PROTOCOL_VERSIONS
    return min_version <= supported[-1] and max_version >= supported[0]


def _endpoint_key(uri: str) -> tuple[str, str]:
    """Authority (case-insensitive) and path: what makes two URIs the same deployment."""
    _, _, rest = uri.partition("://")
    authority, slash, path = rest.partition("/")
    path = "/" + path.split("?", 1)[0].split("#", 1)[0] if slash else "/"
    return authority.rpartition("@")[2].lower(), path


def normalize_uri(uri: str) -> str:
    """How the official server prints a URI: an empty path becomes ``/``."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if not tail.startswith("/"):
        tail = "/" + tail
    return f"{scheme}://{authority}{tail}"


# --------------------------------------------------------------------------------------
# Building schemas from a manifest


def _canonical_json(value: Any) -> Any:
    """JSON schemas come back with sorted keys, as the official server prints them."""
    if isinstance(value, dict):
        return {k: _canonical_json(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_canonical_json(v) for v in value]
    return value


_REF_KEY = "$ref"


def _external_ref(schema: Any) -> str | None:
    if isinstance(schema, dict):
        ref = schema.get(_REF_KEY)
        if isinstance(ref, str) and not ref.startswith("#"):
            return ref
        children: Iterable[Any] = schema.values()
    elif isinstance(schema, list):
        children = schema
    else:
        return None
    for child in children:
        found = _external_ref(child)
        if found is not None:
            return found
    return None


_JSON_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def _schema_problem(schema: Any, root: Any) -> str | None:
    """The first meta-schema violation the official validator would report, if any.

    Not a full meta-schema validation: what SDKs can plausibly get wrong is covered
    (non-schema values, bad ``type``, unresolvable ``$ref``).
    """
    if not isinstance(schema, dict | bool):
        return f'{_json_compact(schema)} is not of types "boolean", "object"'
    if isinstance(schema, bool):
        return None
    ty = schema.get("type")
    if ty is not None:
        names = ty if isinstance(ty, list) else [ty]
        if not all(isinstance(n, str) and n in _JSON_TYPES for n in names):
            return (
                f"{_json_compact(ty)} is not valid under any of the schemas listed in the "
                "'anyOf' keyword"
            )
    ref = schema.get(_REF_KEY)
    if isinstance(ref, str) and ref.startswith("#"):
        node: Any = root
        for token in ref[1:].split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return f"Pointer '{ref[1:]}' does not exist"
    children: list[Any] = []
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            children.extend(schema[key].values())
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            children.extend(schema[key])
    for key in _SUBSCHEMA_ONE:
        if key in schema:
            children.append(schema[key])
    for child in children:
        problem = _schema_problem(child, root)
        if problem is not None:
            return problem
    return None


def _check_json_schema(service: str, handler: str, position: str, schema: Any) -> None:
    prefix = f"the json schema for {service}/{handler} {position} is invalid: "
    ref = _external_ref(schema)
    if ref is not None:
        raise schema_error(
            400,
            f"{prefix}Resource '{ref}' is not present in a registry and retrieving it failed: "
            f"the schema contains an external reference {ref}. This is not supported, all "
            "schemas uploaded to Restate should be normalized first, bundling the external "
            "references.",
        )
    problem = _schema_problem(schema, schema)
    if problem is not None:
        raise schema_error(400, prefix + problem)


def _json_compact(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _input_rules(
    service: str, handler: str, payload: Mapping[str, Any] | None
) -> tuple[InputRule, ...]:
    if payload is None:
        return _DEFAULT_INPUT_RULES
    rules: list[InputRule] = []
    if not payload.get("required"):
        rules.append(InputRule("none"))
    ct = payload.get("contentType")
    if ct is not None:
        try:
            matcher = ContentTypeMatcher.parse(ct)
        except ValueError as e:
            raise schema_error(
                400, f"the handler '{handler}' input content-type is not valid: {e}"
            ) from None
        schema = payload.get("jsonSchema")
        if schema is not None:
            _check_json_schema(service, handler, "input", schema)
            rules.append(InputRule("json", matcher, _canonical_json(schema)))
        else:
            rules.append(InputRule("content_type", matcher))
    return tuple(rules)


_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


def _output_rules(service: str, handler: str, payload: Mapping[str, Any] | None) -> OutputRules:
    if payload is None:
        return OutputRules()
    ct = payload.get("contentType")
    if ct is None:
        return OutputRules(content_type=None)
    schema = payload.get("jsonSchema")
    if schema is not None:
        _check_json_schema(service, handler, "output", schema)
    if not _HEADER_VALUE.fullmatch(ct):
        # The official names the content type where the handler name belongs.
        raise schema_error(
            400,
            f"the handler '{ct}' output content-type is not valid: failed to parse header value",
        )
    return OutputRules(
        content_type=ct,
        set_content_type_if_empty=bool(payload.get("setContentTypeIfEmpty")),
        json_schema=None if schema is None else _canonical_json(schema),
    )


_VALID_HANDLER_TYPES: dict[tuple[ServiceType, str | None], HandlerType | None] = {
    ("Service", None): None,
    ("Service", "SHARED"): None,
    ("VirtualObject", None): "Exclusive",
    ("VirtualObject", "EXCLUSIVE"): "Exclusive",
    ("VirtualObject", "SHARED"): "Shared",
    ("Workflow", None): "Shared",
    ("Workflow", "SHARED"): "Shared",
    ("Workflow", "WORKFLOW"): "Workflow",
}


def _build_handler(
    service: str, service_ty: ServiceType, service_public: bool, m: Mapping[str, Any]
) -> HandlerSchema:
    name = m["name"]
    declared = m.get("ty")
    key = (service_ty, declared)
    if key not in _VALID_HANDLER_TYPES:
        shown = "None" if declared is None else f"Some({_MANIFEST_HANDLER_TYPES[declared]})"
        raise schema_error(
            400,
            f"invalid combination of service type and handler type '({service_ty}, {shown})'",
        )
    ty = _VALID_HANDLER_TYPES[key]
    if m.get("workflowCompletionRetention") is not None and ty != "Workflow":
        raise schema_error(
            400, f"{name} sets the workflow_completion_retention, but it's not a WORKFLOW handler"
        )
    if m.get("idempotencyRetention") is not None and ty == "Workflow":
        raise schema_error(
            400, f"{name} sets the idempotency_retention, but it's a WORKFLOW handler"
        )
    private = m.get("ingressPrivate")
    if not service_public and private is False:
        raise schema_error(
            400,
            f"The service {service} is private, but the {name} is explicitly set as public. "
            "This is not supported. Please make the service public, and hide the individual "
            "handlers",
        )
    public_override = None if private is None else not private
    return HandlerSchema(
        name=name,
        # Plain-service handlers have no type in the official model.
        ty=ty if service_ty != "Service" else None,
        public=service_public if public_override is None else public_override,
        input_rules=_input_rules(service, name, m.get("input")),
        output_rules=_output_rules(service, name, m.get("output")),
        documentation=m.get("documentation"),
        metadata=dict(m.get("metadata") or {}),
        public_override=public_override,
        idempotency_retention_ms=m.get("idempotencyRetention"),
        workflow_completion_retention_ms=m.get("workflowCompletionRetention"),
        journal_retention_ms=m.get("journalRetention"),
        inactivity_timeout_ms=m.get("inactivityTimeout"),
        abort_timeout_ms=m.get("abortTimeout"),
        enable_lazy_state=m.get("enableLazyState"),
        retry=_retry_overrides(m),
    )


def build_service(m: Mapping[str, Any], deployment_id: str, revision: int) -> ServiceSchema:
    """A service revision from a decoded manifest service; raises AdminError (400)."""
    name = m["name"]
    ty = _MANIFEST_SERVICE_TYPES[m["ty"]]
    private = m.get("ingressPrivate")
    public = True if private is None else not private
    handlers: dict[str, HandlerSchema] = {}
    for hm in m["handlers"]:
        handlers[hm["name"]] = _build_handler(name, ty, public, hm)
    return ServiceSchema(
        name=name,
        ty=ty,
        handlers=handlers,
        deployment_id=deployment_id,
        revision=revision,
        public=public,
        documentation=m.get("documentation"),
        metadata=dict(m.get("metadata") or {}),
        idempotency_retention_ms=m.get("idempotencyRetention"),
        journal_retention_ms=m.get("journalRetention"),
        inactivity_timeout_ms=m.get("inactivityTimeout"),
        abort_timeout_ms=m.get("abortTimeout"),
        enable_lazy_state_override=m.get("enableLazyState"),
        retry=_retry_overrides(m),
    )


def _check_service_name(name: str) -> None:
    lower = name.lower()
    if lower.startswith("restate") or lower == "openapi":
        raise schema_error(
            400, f"cannot insert/modify service '{name}' as it contains a reserved name", "META0005"
        )


# --------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True, slots=True)
class DiscoveredEndpoint:
    """What discovery learned about a deployment; pure data for `Registry.add_deployment`."""

    protocol_type: ProtocolType
    http_version: HttpVersion
    min_protocol_version: int
    max_protocol_version: int
    services: tuple[Mapping[str, Any], ...]  # decoded manifest services
    sdk_version: str | None = None


AddResult = Literal["Created", "Unchanged", "Overwritten"]


class Registry:
    """Deployments and their services; immutable, changed by returning a new Registry."""

    __slots__ = ("_active", "deployments", "version")

    def __init__(self, deployments: Iterable[Deployment] = (), version: int = 0) -> None:
        self.deployments: Mapping[str, Deployment] = {d.id: d for d in deployments}
        self.version = version
        self._active = _active_index(self.deployments.values())

    # --- lookups used by ingress / invoker

    def service(self, name: str) -> ServiceSchema:
        """The latest revision of a service; raises ServiceNotFound."""
        svc = self._active.get(name)
        if svc is None:
            raise ServiceNotFound(name)
        return svc

    def resolve(self, service: str, handler: str) -> tuple[ServiceSchema, HandlerSchema]:
        svc = self.service(service)
        h = svc.handlers.get(handler)
        if h is None:
            raise HandlerNotFound(service, handler)
        return svc, h

    def resolve_at(
        self, deployment_id: str, service: str, handler: str
    ) -> tuple[ServiceSchema, HandlerSchema]:
        """The revision a deployment exposes (for invocations pinned to it)."""
        dep = self.deployment(deployment_id)
        svc = dep.services.get(service)
        if svc is None:
            raise ServiceNotFound(service)
        h = svc.handlers.get(handler)
        if h is None:
            raise HandlerNotFound(service, handler)
        return svc, h

    def deployment(self, deployment_id: str) -> Deployment:
        dep = self.deployments.get(deployment_id)
        if dep is None:
            raise DeploymentNotFound(deployment_id)
        return dep

    def latest_deployment(self, service: str) -> Deployment:
        return self.deployment(self.service(service).deployment_id)

    def services(self) -> list[ServiceSchema]:
        return list(self._active.values())

    def has_service(self, name: str) -> bool:
        return name in self._active

    def find_deployment(self, uri: str) -> Deployment | None:
        """The deployment registered for the same endpoint (newest if several)."""
        found = [d for d in self.deployments.values() if d.same_endpoint(uri)]
        return max(found, key=lambda d: d.created_at_ms) if found else None

    # --- changes

    def add_deployment(
        self,
        *,
        uri: str,
        discovered: DiscoveredEndpoint,
        new_id: str,
        now_ms: int,
        additional_headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        overwrite: bool = False,
        allow_breaking: bool = False,
    ) -> tuple[AddResult, Registry, Deployment]:
        """Register a discovered deployment; raises AdminError on schema violations."""
        proposed: dict[str, Mapping[str, Any]] = {}
        for m in discovered.services:
            _check_service_name(m["name"])
            proposed[m["name"]] = m

        existing = self.find_deployment(uri)
        result: AddResult = "Created"
        dep_id = new_id
        if existing is not None:
            if not overwrite:
                return "Unchanged", self, existing
            result = "Overwritten"
            dep_id = existing.id

        services: dict[str, ServiceSchema] = {}
        for name, m in proposed.items():
            previous = self._active.get(name)
            new_ty = _MANIFEST_SERVICE_TYPES[m["ty"]]
            if previous is not None and previous.ty != new_ty and not allow_breaking:
                raise schema_error(
                    409,
                    f"detected a new service revision for '{name}' changing the service type "
                    "from previous revision. Service type cannot be changed across revisions.",
                    "META0006",
                )
            revision = previous.revision + 1 if previous is not None else 1
            services[name] = build_service(m, dep_id, revision)

        deployment = Deployment(
            id=dep_id,
            uri=normalize_uri(uri),
            protocol_type=discovered.protocol_type,
            http_version=discovered.http_version,
            min_protocol_version=discovered.min_protocol_version,
            max_protocol_version=discovered.max_protocol_version,
            created_at_ms=now_ms,
            services=services,
            additional_headers={k.lower(): v for k, v in (additional_headers or {}).items()},
            metadata=dict(metadata or {}),
            sdk_version=discovered.sdk_version,
        )
        deployments = dict(self.deployments)
        deployments[dep_id] = deployment
        return result, Registry(deployments.values(), self.version + 1), deployment

    def remove_deployment(self, deployment_id: str) -> Registry:
        if deployment_id not in self.deployments:
            raise DeploymentNotFound(deployment_id)
        rest = (d for d in self.deployments.values() if d.id != deployment_id)
        return Registry(rest, self.version + 1)

    # --- persistence

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "deployments": [_deployment_to_json(d) for d in self.deployments.values()],
        }

    @staticmethod
    def from_json(d: Mapping[str, Any]) -> Registry:
        return Registry(
            (_deployment_from_json(x) for x in d.get("deployments", ())), d.get("version", 0)
        )

    def __repr__(self) -> str:
        return f"Registry(version={self.version}, deployments={list(self.deployments)})"


def _active_index(deployments: Iterable[Deployment]) -> dict[str, ServiceSchema]:
    active: dict[str, ServiceSchema] = {}
    for dep in deployments:
        for svc in dep.services.values():
            current = active.get(svc.name)
            if current is None or current.revision < svc.revision:
                active[svc.name] = svc
    return active


# --- persistence of schemas (our own document shape; the manifest fields are re-derived)


def _handler_to_json(h: HandlerSchema) -> dict[str, Any]:
    return {
        "name": h.name,
        "ty": h.ty,
        "public": h.public,
        "public_override": h.public_override,
        "input_rules": [
            {
                "kind": r.kind,
                "content_type": None if r.content_type is None else str(r.content_type),
                "json_schema": r.json_schema,
            }
            for r in h.input_rules
        ],
        "output": {
            "content_type": h.output_rules.content_type,
            "set_content_type_if_empty": h.output_rules.set_content_type_if_empty,
            "json_schema": h.output_rules.json_schema,
        },
        "documentation": h.documentation,
        "metadata": dict(h.metadata),
        "idempotency_retention_ms": h.idempotency_retention_ms,
        "workflow_completion_retention_ms": h.workflow_completion_retention_ms,
        "journal_retention_ms": h.journal_retention_ms,
        "inactivity_timeout_ms": h.inactivity_timeout_ms,
        "abort_timeout_ms": h.abort_timeout_ms,
        "enable_lazy_state": h.enable_lazy_state,
        "retry": h.retry.to_json(),
    }


def _handler_from_json(d: Mapping[str, Any]) -> HandlerSchema:
    rules = tuple(
        InputRule(
            r["kind"],
            None if r["content_type"] is None else ContentTypeMatcher.parse(r["content_type"]),
            r.get("json_schema"),
        )
        for r in d["input_rules"]
    )
    out = d["output"]
    return HandlerSchema(
        name=d["name"],
        ty=d["ty"],
        public=d["public"],
        input_rules=rules,
        output_rules=OutputRules(
            out["content_type"], out["set_content_type_if_empty"], out.get("json_schema")
        ),
        documentation=d.get("documentation"),
        metadata=d.get("metadata") or {},
        public_override=d.get("public_override"),
        idempotency_retention_ms=d.get("idempotency_retention_ms"),
        workflow_completion_retention_ms=d.get("workflow_completion_retention_ms"),
        journal_retention_ms=d.get("journal_retention_ms"),
        inactivity_timeout_ms=d.get("inactivity_timeout_ms"),
        abort_timeout_ms=d.get("abort_timeout_ms"),
        enable_lazy_state=d.get("enable_lazy_state"),
        retry=RetryOverrides.from_json(d.get("retry") or {}),
    )


def _service_to_json(s: ServiceSchema) -> dict[str, Any]:
    return {
        "name": s.name,
        "ty": s.ty,
        "revision": s.revision,
        "public": s.public,
        "documentation": s.documentation,
        "metadata": dict(s.metadata),
        "idempotency_retention_ms": s.idempotency_retention_ms,
        "workflow_completion_retention_ms": s.workflow_completion_retention_ms,
        "journal_retention_ms": s.journal_retention_ms,
        "inactivity_timeout_ms": s.inactivity_timeout_ms,
        "abort_timeout_ms": s.abort_timeout_ms,
        "enable_lazy_state": s.enable_lazy_state_override,
        "retry": s.retry.to_json(),
        "handlers": [_handler_to_json(h) for h in s.handlers.values()],
    }


def _service_from_json(d: Mapping[str, Any], deployment_id: str) -> ServiceSchema:
    return ServiceSchema(
        name=d["name"],
        ty=d["ty"],
        handlers={h["name"]: _handler_from_json(h) for h in d["handlers"]},
        deployment_id=deployment_id,
        revision=d["revision"],
        public=d["public"],
        documentation=d.get("documentation"),
        metadata=d.get("metadata") or {},
        idempotency_retention_ms=d.get("idempotency_retention_ms"),
        workflow_completion_retention_ms=d.get("workflow_completion_retention_ms"),
        journal_retention_ms=d.get("journal_retention_ms"),
        inactivity_timeout_ms=d.get("inactivity_timeout_ms"),
        abort_timeout_ms=d.get("abort_timeout_ms"),
        enable_lazy_state_override=d.get("enable_lazy_state"),
        retry=RetryOverrides.from_json(d.get("retry") or {}),
    )


def _deployment_to_json(dep: Deployment) -> dict[str, Any]:
    return {
        "id": dep.id,
        "uri": dep.uri,
        "protocol_type": dep.protocol_type,
        "http_version": dep.http_version,
        "min_protocol_version": dep.min_protocol_version,
        "max_protocol_version": dep.max_protocol_version,
        "created_at_ms": dep.created_at_ms,
        "additional_headers": dict(dep.additional_headers),
        "metadata": dict(dep.metadata),
        "sdk_version": dep.sdk_version,
        "services": [_service_to_json(s) for s in dep.services.values()],
    }


def _deployment_from_json(d: Mapping[str, Any]) -> Deployment:
    dep_id = d["id"]
    return Deployment(
        id=dep_id,
        uri=d["uri"],
        protocol_type=d["protocol_type"],
        http_version=d["http_version"],
        min_protocol_version=d["min_protocol_version"],
        max_protocol_version=d["max_protocol_version"],
        created_at_ms=d["created_at_ms"],
        services={s["name"]: _service_from_json(s, dep_id) for s in d["services"]},
        additional_headers=d.get("additional_headers") or {},
        metadata=d.get("metadata") or {},
        sdk_version=d.get("sdk_version"),
    )


# --------------------------------------------------------------------------------------
# Rendering in the official admin API shapes (field order as the official prints it)


def format_timestamp(ms: int) -> str:
    """RFC 3339 with nanoseconds, as the official server prints ``created_at``."""
    seconds, millis = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis * 1_000_000:09d}Z"


def render_handler(h: HandlerSchema, protocol_type: ProtocolType | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": h.name}
    if h.ty is not None:
        out["ty"] = h.ty
    if h.documentation is not None:
        out["documentation"] = h.documentation
    if h.metadata:
        out["metadata"] = dict(h.metadata)
    if h.idempotency_retention_ms is not None:
        out["idempotency_retention"] = format_duration(h.idempotency_retention_ms)
    if h.journal_retention_ms is not None:
        out["journal_retention"] = format_duration(h.journal_retention_ms)
    info = []
    if h.inactivity_timeout_ms is not None:
        if protocol_type == "RequestResponse":
            info.append(
                {
                    "code": "RT0021",
                    "message": "The configured inactivity_timeout "
                    f"{format_duration(h.inactivity_timeout_ms)} will not be applied because "
                    "the handler is exposed in Request/Response mode.",
                }
            )
        else:
            out["inactivity_timeout"] = format_duration(h.inactivity_timeout_ms)
    if h.abort_timeout_ms is not None:
        out["abort_timeout"] = format_duration(h.abort_timeout_ms)
    if h.enable_lazy_state is not None:
        out["enable_lazy_state"] = h.enable_lazy_state
    out["public"] = h.public
    out["input_description"] = h.input_description
    out["output_description"] = h.output_description
    input_schema = h.input_json_schema
    if input_schema is not None:
        out["input_json_schema"] = input_schema
    if h.output_rules.json_schema is not None:
        out["output_json_schema"] = h.output_rules.json_schema
    retry: dict[str, Any] = {}
    r = h.retry
    if r.initial_interval_ms is not None:
        retry["initial_interval"] = format_duration(r.initial_interval_ms)
    if r.exponentiation_factor is not None:
        retry["exponentiation_factor"] = r.exponentiation_factor
    retry["max_attempts"] = r.max_attempts
    if r.max_interval_ms is not None:
        retry["max_interval"] = format_duration(r.max_interval_ms)
    if r.on_max_attempts is not None:
        retry["on_max_attempts"] = r.on_max_attempts
    out["retry_policy"] = retry
    if info:
        out["info"] = info
    return out


def render_service(s: ServiceSchema, protocol_type: ProtocolType | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": s.name,
        "ty": s.ty,
        "handlers": [render_handler(h, protocol_type) for h in s.handlers.values()],
    }
    if s.documentation is not None:
        out["documentation"] = s.documentation
    if s.metadata:
        out["metadata"] = dict(s.metadata)
    out["deployment_id"] = s.deployment_id
    out["revision"] = s.revision
    out["public"] = s.public
    out["idempotency_retention"] = format_duration(s.effective_idempotency_retention_ms)
    wcr = s.effective_workflow_completion_retention_ms
    if wcr is not None:
        out["workflow_completion_retention"] = format_duration(wcr)
    out["journal_retention"] = format_duration(s.effective_journal_retention_ms)
    info = []
    if protocol_type == "RequestResponse":
        out["inactivity_timeout"] = format_duration(0)
        if s.inactivity_timeout_ms is not None:
            info.append(
                {
                    "code": "RT0021",
                    "message": "The configured inactivity_timeout "
                    f"{format_duration(s.inactivity_timeout_ms)} will not be applied because "
                    "the service is exposed in Request/Response mode.",
                }
            )
    else:
        out["inactivity_timeout"] = format_duration(s.effective_inactivity_timeout_ms)
    out["abort_timeout"] = format_duration(s.effective_abort_timeout_ms)
    out["enable_lazy_state"] = s.enable_lazy_state
    p = s.retry_policy
    out["retry_policy"] = {
        "initial_interval": format_duration(p.initial_interval_ms),
        "exponentiation_factor": float(p.exponentiation_factor),
        "max_attempts": p.max_attempts,
        "max_interval": None if p.max_interval_ms is None else format_duration(p.max_interval_ms),
        "on_max_attempts": p.on_max_attempts,
    }
    if info:
        out["info"] = info
    return out


def _deployment_head(dep: Deployment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": dep.id,
        "uri": dep.uri,
        "protocol_type": dep.protocol_type,
        "http_version": dep.http_version,
    }
    if dep.additional_headers:
        out["additional_headers"] = dict(dep.additional_headers)
    if dep.metadata:
        out["metadata"] = dict(dep.metadata)
    out["created_at"] = format_timestamp(dep.created_at_ms)
    out["min_protocol_version"] = dep.min_protocol_version
    out["max_protocol_version"] = dep.max_protocol_version
    if dep.sdk_version is not None:
        out["sdk_version"] = dep.sdk_version
    return out


def render_deployment(dep: Deployment) -> dict[str, Any]:
    """An entry of ``GET /deployments``."""
    out = _deployment_head(dep)
    out["services"] = [{"name": s.name, "revision": s.revision} for s in dep.services.values()]
    return out


def render_detailed_deployment(dep: Deployment) -> dict[str, Any]:
    """``GET /deployments/{id}``."""
    out = _deployment_head(dep)
    out["services"] = [render_service(s, dep.protocol_type) for s in dep.services.values()]
    return out


def render_register_response(dep: Deployment) -> dict[str, Any]:
    """The body of ``POST /deployments``."""
    out: dict[str, Any] = {
        "id": dep.id,
        "services": [render_service(s, dep.protocol_type) for s in dep.services.values()],
        "min_protocol_version": dep.min_protocol_version,
        "max_protocol_version": dep.max_protocol_version,
    }
    if dep.sdk_version is not None:
        out["sdk_version"] = dep.sdk_version
    return out


def render_latest_service(registry: Registry, name: str) -> dict[str, Any]:
    svc = registry.service(name)
    dep = registry.deployments.get(svc.deployment_id)
    return render_service(svc, None if dep is None else dep.protocol_type)


def iter_rendered_services(registry: Registry) -> Iterator[dict[str, Any]]:
    for svc in registry.services():
        dep = registry.deployments.get(svc.deployment_id)
        yield render_service(svc, None if dep is None else dep.protocol_type)


__all__ = [
    "DEFAULT_RETRY_POLICY",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "AdminError",
    "ContentTypeMatcher",
    "Deployment",
    "DeploymentNotFound",
    "DiscoveredEndpoint",
    "HandlerNotFound",
    "HandlerSchema",
    "InputRule",
    "InvocationOptions",
    "JsonDecodeError",
    "JsonSyntaxError",
    "OutputRules",
    "Registry",
    "RetryOverrides",
    "RetryPolicy",
    "ServiceNotFound",
    "ServiceSchema",
    "build_service",
    "decode_manifest",
    "deployment_id_error",
    "format_duration",
    "negotiate_protocol_version",
    "new_deployment_id",
    "normalize_uri",
    "parse_json",
    "parse_json_value",
    "protocol_versions_acceptable",
    "render_deployment",
    "render_detailed_deployment",
    "render_register_response",
    "render_service",
]
