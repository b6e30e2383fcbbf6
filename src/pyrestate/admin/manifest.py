"""Decoding the endpoint manifest a deployment answers discovery with (versions 1 to 4).

Strict like the official server: unknown or repeated fields, wrong types and bad names
are refused. Optional fields may be null, meaning absent, except maps. Errors name the
problem and where it is as a JSON path, e.g. ``$.services[0].handlers[2].name``.

Numbers are bounded tighter than the schema's u64 and f64: durations (ms) to about 100
years, counts to a signed 64-bit integer, floats to finite values, so that nothing a
deployment announces can overflow storage or the arithmetic done with it later.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from pyrestate.admin.json_text import JsonError, parse_json
from pyrestate.core.limits import MAX_DURATION_MS

# Decodes one value found at a path; raises ManifestError.
Check = Callable[[Any, str], Any]


class ManifestError(ValueError):
    """A manifest that is not JSON, or not of the manifest's shape."""


class _Object(dict[str, Any]):
    """A JSON object that remembers a key it had twice (the last value stands)."""

    repeated: str | None = None


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) < len(pairs):
        obj.repeated = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
    return obj


def _fail(path: str, problem: str) -> ManifestError:
    return ManifestError(f"{problem} at {path}")


def shown(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return json.dumps(value)


def _listed(names: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _typed(expected: str, *types: type) -> Check:
    def check(value: Any, path: str) -> Any:
        # By exact type: a boolean is no integer here.
        if type(value) not in types:
            raise _fail(path, f"invalid type: {shown(value)}, expected {expected}")
        return value

    return check


_STRING = _typed("a string", str)
_BOOLEAN = _typed("a boolean", bool)
_NUMBER = _typed("f64", int, float)


def _f64(value: Any, path: str) -> float:
    # Python reads 1e400 as infinity and 1 followed by 400 zeros as an int no float
    # holds; serde_json refuses both as out of range.
    try:
        finite = math.isfinite(_NUMBER(value, path))
    except OverflowError:
        finite = False
    if not finite:
        raise _fail(path, "number out of range")
    return value


def _u64(minimum: int, maximum: int = 2**64 - 1, unit: str = "") -> Check:
    expected = "u64" if minimum == 0 else "a nonzero u64"
    integer = _typed(expected, int)

    def check(value: Any, path: str) -> int:
        if not minimum <= integer(value, path) < 2**64:
            raise _fail(path, f"invalid value: {value}, expected {expected}")
        if value > maximum:
            raise _fail(path, f"invalid value: {value}, expected at most {maximum}{unit}")
        return value

    return check


def _one_of(*names: str) -> Check:
    def check(value: Any, path: str) -> str:
        if value not in names:
            raise _fail(path, f"unknown variant {shown(value)}, expected one of {_listed(names)}")
        return value

    return check


def _matching(pattern: str) -> Check:
    regex = re.compile(pattern)

    def check(value: Any, path: str) -> str:
        if not regex.fullmatch(_STRING(value, path)):
            raise _fail(path, f'{shown(value)} doesn\'t match pattern "{pattern}"')
        return value

    return check


def _string_map(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _fail(path, f"invalid type: {shown(value)}, expected a map")
    return {k: _STRING(v, f"{path}.{k}") for k, v in value.items()}


def _any(value: Any, path: str) -> Any:
    return value


def _array_of(item: Check) -> Check:
    def check(value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise _fail(path, f"invalid type: {shown(value)}, expected an array")
        return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return check


def _struct(fields: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    def check(value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _fail(path, f"invalid type: {shown(value)}, expected an object")
        repeated = getattr(value, "repeated", None)
        if repeated is not None:
            raise _fail(path, f"duplicate field `{repeated}`")
        out: dict[str, Any] = {}
        for key, item in value.items():
            field = fields.get(key)
            if field is None:
                expected = _listed(sorted(fields))
                raise _fail(path, f"unknown field `{key}`, expected one of {expected}")
            # Optional fields are Option<…> officially, where null means absent; maps are not.
            if item is None and key not in required and field is not _string_map:
                continue
            out[key] = field(item, f"{path}.{key}")
        for key in required:
            if key not in value:
                raise _fail(path, f"missing field `{key}`")
        return out

    return check


_MS = _u64(0, MAX_DURATION_MS, " ms (about 100 years)")
_COUNT = _u64(0, 2**63 - 1)
# What services and handlers can both set.
_OPTIONS: dict[str, Check] = {
    "abortTimeout": _MS,
    "documentation": _STRING,
    "enableLazyState": _BOOLEAN,
    "idempotencyRetention": _MS,
    "inactivityTimeout": _MS,
    "ingressPrivate": _BOOLEAN,
    "journalRetention": _MS,
    "metadata": _string_map,
    "retryPolicyExponentiationFactor": _f64,
    "retryPolicyInitialInterval": _MS,
    "retryPolicyMaxAttempts": _COUNT,
    "retryPolicyMaxInterval": _MS,
    "retryPolicyOnMaxAttempts": _one_of("PAUSE", "KILL"),
}
_HANDLER = _struct(
    {
        **_OPTIONS,
        "input": _struct({"contentType": _STRING, "jsonSchema": _any, "required": _BOOLEAN}),
        "name": _matching("^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*$"),
        "output": _struct(
            {"contentType": _STRING, "jsonSchema": _any, "setContentTypeIfEmpty": _BOOLEAN}
        ),
        "ty": _one_of("WORKFLOW", "EXCLUSIVE", "SHARED"),
        "workflowCompletionRetention": _MS,
    },
    required=("name",),
)
_SERVICE = _struct(
    {
        **_OPTIONS,
        "handlers": _array_of(_HANDLER),
        "name": _matching("^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*$"),
        "ty": _one_of("VIRTUAL_OBJECT", "SERVICE", "WORKFLOW"),
    },
    required=("handlers", "name", "ty"),
)
_ENDPOINT = _struct(
    {
        "lambdaCompression": _one_of("zstd"),
        "maxProtocolVersion": _u64(1),
        "minProtocolVersion": _u64(1),
        "protocolMode": _one_of("BIDI_STREAM", "REQUEST_RESPONSE"),
        "services": _array_of(_SERVICE),
    },
    required=("maxProtocolVersion", "minProtocolVersion", "services"),
)


def decode_manifest(data: bytes) -> dict[str, Any]:
    """The manifest in ``data`` as plain JSON data with every field checked.

    Optional fields may be absent. Raises ManifestError.
    """
    try:
        document = parse_json(data, object_pairs_hook=_object)
    except JsonError as e:
        raise ManifestError(str(e)) from None
    return _ENDPOINT(document, "$")
