"""The playground's first body, made from a handler's input JSON schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pyrestate.ui.schema_example import example


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "string"}, ""),
        ({"type": "integer"}, 0),
        ({"type": "boolean"}, False),
        ({"type": ["null", "number"]}, 0),
        ({"type": "array", "items": {"type": "string"}}, []),
        ({"type": "object"}, {}),
        ({}, None),
        ({"type": "string", "default": "hi"}, "hi"),
        ({"type": "string", "examples": ["e1", "e2"]}, "e1"),
        ({"enum": ["red", "green"]}, "red"),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, 0),
    ],
)
def test_simple_schemas(schema: dict[str, Any], value: Any) -> None:
    assert json.loads(example(schema)) == value


def test_objects_get_their_properties_and_references_are_followed() -> None:
    schema = {
        "type": "object",
        "properties": {
            "user": {"$ref": "#/$defs/User"},
            "tags": {"type": "array"},
        },
        "$defs": {
            "User": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            }
        },
    }
    assert json.loads(example(schema)) == {"user": {"name": "", "age": 0}, "tags": []}
    # A reference outside the schema says nothing about the value.
    assert json.loads(example({"$ref": "https://elsewhere/schema"})) is None


def test_recursive_schemas_end() -> None:
    schema = {
        "$ref": "#/$defs/Node",
        "$defs": {"Node": {"properties": {"next": {"$ref": "#/$defs/Node"}}}},
    }
    value = json.loads(example(schema))
    depth = 0
    while isinstance(value, dict):
        value = value["next"]
        depth += 1
    assert 1 < depth < 20
