"""Payloads as pages show them, and times in UTC."""

from __future__ import annotations

from pyrestate.ui.values import MAX_SHOWN_CHARS, Shown, bytes_of_hex, show_bytes, when, when_ms


def test_json_is_pretty_printed_other_bytes_shown_as_they_are() -> None:
    assert show_bytes(b'{"a":[1,2],"b":"\xc3\xa9"}') == Shown(
        '{\n  "a": [\n    1,\n    2\n  ],\n  "b": "é"\n}', "json", 20
    )
    assert show_bytes(b"hello there") == Shown("hello there", "text", 11)
    assert show_bytes(b"\xff\x00") == Shown("ff00", "binary", 2)
    assert show_bytes(b"") == Shown("", "empty", 0)


def test_long_values_are_cut_with_their_size() -> None:
    shown = show_bytes(b"x" * (MAX_SHOWN_CHARS + 10))
    assert shown.cut and len(shown.text) == MAX_SHOWN_CHARS and shown.size == MAX_SHOWN_CHARS + 10


def test_hex_columns_and_times() -> None:
    assert bytes_of_hex("3578") == b"5x"
    assert bytes_of_hex(None) == b""
    assert when("2026-11-28T15:51:04.693Z") == "2026-11-28 15:51:04.693 UTC"
    assert when("2026-11-28T15:51:04Z") == "2026-11-28 15:51:04.000 UTC"
    assert when(None) == "" and when("garbage") == "garbage"
    assert when_ms(1795881184671) == "2026-11-28 15:53:04.671 UTC"
