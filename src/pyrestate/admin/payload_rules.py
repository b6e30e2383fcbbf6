"""What a handler accepts as input and declares as output, from its manifest entry.

The ingress checks a request body against the input rules; the texts of refusals and
of the descriptions are the official server's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pyrestate.admin.errors import schema_error
from pyrestate.admin.json_schemas import canonical_json, check_json_schema
from pyrestate.official_format import rust_debug_str

# A valid HTTP field value (RFC 9110), as the official's header parser accepts it.
HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


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
        return ContentTypeMatcher(first, None if second == "*" else second)

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


def json_title(schema: Any) -> str | None:
    """How a JSON schema is named in input and output descriptions."""
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
            return json_title(self.json_schema) or str(self.content_type)
        return str(self.content_type)

    def check(self, content_type: str | None, body: bytes) -> str | None:
        if self.kind == "none":
            if body or content_type is not None:
                shown = "None" if content_type is None else f"Some({rust_debug_str(content_type)})"
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


_NO_INPUT = InputRule("none")
DEFAULT_INPUT_RULES = (_NO_INPUT, InputRule("content_type", ContentTypeMatcher(None, None)))


def describe_input(rules: tuple[InputRule, ...]) -> str:
    if not rules:
        return "<invalid rules>"
    if len(rules) == 1:
        return str(rules[0])
    if len(rules) == 2 and _NO_INPUT in rules:
        return str(rules[1] if rules[0] == _NO_INPUT else rules[0])
    return "one of [" + ", ".join(f'"{r}"' for r in rules) + "]"


@dataclass(frozen=True, slots=True)
class OutputRules:
    content_type: str | None = "application/json"
    set_content_type_if_empty: bool = False
    json_schema: Any = None

    def __str__(self) -> str:
        title = json_title(self.json_schema)
        if title is not None:
            return title
        if self.content_type is None:
            return "none"
        return ("optional " if self.set_content_type_if_empty else "") + self.content_type


def input_rules(
    service: str, handler: str, payload: Mapping[str, Any] | None
) -> tuple[InputRule, ...]:
    """The rules of a manifest ``input`` entry; raises AdminError 400."""
    if payload is None:
        return DEFAULT_INPUT_RULES
    rules = [] if payload.get("required") else [_NO_INPUT]
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
            check_json_schema(service, handler, "input", schema)
            rules.append(InputRule("json", matcher, canonical_json(schema)))
        else:
            rules.append(InputRule("content_type", matcher))
    return tuple(rules)


def output_rules(service: str, handler: str, payload: Mapping[str, Any] | None) -> OutputRules:
    """The rules of a manifest ``output`` entry; raises AdminError 400."""
    if payload is None:
        return OutputRules()
    ct = payload.get("contentType")
    if ct is None:
        return OutputRules(content_type=None)
    schema = payload.get("jsonSchema")
    if schema is not None:
        check_json_schema(service, handler, "output", schema)
    if not HEADER_VALUE.fullmatch(ct):
        # The official names the content type where the handler name belongs.
        raise schema_error(
            400,
            f"the handler '{ct}' output content-type is not valid: failed to parse header value",
        )
    return OutputRules(
        content_type=ct,
        set_content_type_if_empty=bool(payload.get("setContentTypeIfEmpty")),
        json_schema=None if schema is None else canonical_json(schema),
    )
