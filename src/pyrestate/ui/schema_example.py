"""A first request body for the playground, made from a handler's input JSON schema."""

from __future__ import annotations

import json
from typing import Any

_MAX_DEPTH = 8  # schemas may be recursive through $ref; an example need not be deep
_BY_TYPE: dict[str, Any] = {
    "string": "",
    "integer": 0,
    "number": 0,
    "boolean": False,
    "null": None,
}


def example(schema: Any) -> str:
    """Pretty JSON text of a value that fits ``schema`` as far as it is simple to tell."""
    return json.dumps(_value(schema, schema, 0), indent=2, ensure_ascii=False)


def _resolve(ref: str, root: Any) -> Any:
    """A local ``#/...`` reference; anything else gives no schema."""
    if not ref.startswith("#/"):
        return {}
    node = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node


def _value(schema: Any, root: Any, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    for key in ("default", "const"):
        if key in schema:
            return schema[key]
    examples = schema.get("examples")
    if isinstance(examples, list) and examples:
        return examples[0]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if isinstance(schema.get("$ref"), str):
        return _value(_resolve(schema["$ref"], root), root, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return _value(options[0], root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {name: _value(sub, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        return []
    return _BY_TYPE.get(kind) if isinstance(kind, str) else None
