"""Parsing JSON from request bodies and discovery answers, with errors that say where.

The standard ``json`` module does the parsing. What it would accept beyond JSON (NaN and
Infinity, other encodings than UTF-8, lone surrogates) is refused, and every failure is
one `JsonError` naming the problem and, where the parser knows it, line and column.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_WHITESPACE = " \t\n\r"

PairsHook = Callable[[list[tuple[str, Any]]], Any]


class JsonError(ValueError):
    """Text that is not one JSON value."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _positioned(e: json.JSONDecodeError) -> JsonError:
    return JsonError(f"{e.msg}: line {e.lineno} column {e.colno}")


def parse_json_prefix(
    data: bytes, object_pairs_hook: PairsHook | None = None
) -> tuple[Any, JsonError | None]:
    """The leading JSON value of ``data``, and the error for what trails it, if anything.

    The official server checks the type of a request body before complaining about
    trailing bytes, so callers check the value first and raise the second error after.
    """
    decoder = json.JSONDecoder(object_pairs_hook=object_pairs_hook, parse_constant=_refuse_constant)
    try:
        text = data.decode("utf-8")
        start = len(text) - len(text.lstrip(_WHITESPACE))
        value, end = decoder.raw_decode(text, start)
        if "\\u" in text:
            # Only escapes can make lone surrogates, which no UTF-8 text can carry.
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except json.JSONDecodeError as e:
        raise _positioned(e) from None
    except UnicodeEncodeError:
        raise JsonError("lone surrogate in a \\u escape") from None
    # Bad UTF-8, NaN, numbers too long to convert, nesting too deep for the parser.
    except (ValueError, RecursionError) as e:
        raise JsonError(str(e)) from None
    rest = text[end:].lstrip(_WHITESPACE)
    if not rest:
        return value, None
    return value, _positioned(
        json.JSONDecodeError("trailing characters", text, len(text) - len(rest))
    )


def parse_json(data: bytes, object_pairs_hook: PairsHook | None = None) -> Any:
    """The JSON value ``data`` holds; raises JsonError."""
    value, trailing = parse_json_prefix(data, object_pairs_hook)
    if trailing is not None:
        raise trailing
    return value
