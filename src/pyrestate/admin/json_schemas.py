"""The JSON schemas handlers declare for their input and output.

Not a full meta-schema validation: what SDKs can plausibly get wrong is refused (values
that are no schema, bad ``type``, unresolvable or external ``$ref``), with the texts of
the official server's validator.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pyrestate.admin.errors import schema_error

_JSON_TYPES = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def canonical_json(value: Any) -> Any:
    """The value with sorted keys, as the official server prints schemas back."""
    if isinstance(value, dict):
        return {k: canonical_json(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical_json(v) for v in value]
    return value


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _external_ref(schema: Any) -> str | None:
    children: Iterable[Any]
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            return ref
        children = schema.values()
    elif isinstance(schema, list):
        children = schema
    else:
        return None
    return next((r for r in map(_external_ref, children) if r is not None), None)


def _pointer_target_exists(root: Any, pointer: str) -> bool:
    node = root
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True


def _schema_problem(schema: Any, root: Any) -> str | None:
    """The first violation the official validator would report, if any."""
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return f'{_compact(schema)} is not of types "boolean", "object"'
    ty = schema.get("type")
    if ty is not None:
        names = ty if isinstance(ty, list) else [ty]
        if not all(isinstance(n, str) and n in _JSON_TYPES for n in names):
            return (
                f"{_compact(ty)} is not valid under any of the schemas listed in the "
                "'anyOf' keyword"
            )
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#") and not _pointer_target_exists(root, ref[1:]):
        return f"Pointer '{ref[1:]}' does not exist"
    children: list[Any] = []
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            children.extend(schema[key].values())
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            children.extend(schema[key])
    children.extend(schema[key] for key in _SUBSCHEMA_ONE if key in schema)
    return next((p for p in (_schema_problem(c, root) for c in children) if p is not None), None)


def check_json_schema(service: str, handler: str, position: str, schema: Any) -> None:
    """Raises AdminError 400 if ``schema`` is not one the official server accepts."""
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
