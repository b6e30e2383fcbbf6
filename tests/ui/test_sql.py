"""Values from requests become SQL only quoted or strictly checked."""

from __future__ import annotations

import pytest

from pyrestate.ui.sql import BadValue, invocation_id, literal, status, timestamp


def test_literals_double_their_quotes() -> None:
    assert literal("plain") == "'plain'"
    assert literal("O'Brien") == "'O''Brien'"
    assert literal("'; DROP TABLE state; --") == "'''; DROP TABLE state; --'"
    with pytest.raises(BadValue):
        literal("nul\x00byte")


def test_invocation_ids_must_parse() -> None:
    good = "inv_1cmzB8508NFe0eF1X7nOvdvUTBRzVAlSMc"
    assert invocation_id(f" {good} ") == good
    for bad in ("", "inv_1' OR 1=1 --", "dp_1cmzB8508NFe0eF1X7nOvdvUTBRzVAlSMc", good + "x"):
        with pytest.raises(BadValue, match="is not an invocation id"):
            invocation_id(bad)


def test_statuses_are_the_ones_sql_shows() -> None:
    assert status("backing-off") == "backing-off"
    with pytest.raises(BadValue, match="unknown status"):
        status("invoked")


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("2026-11-28T15:51", "2026-11-28T15:51:00.000Z"),
        ("2026-11-28T15:51:04.693Z", "2026-11-28T15:51:04.693Z"),
        ("2026-11-28T16:51:04+01:00", "2026-11-28T15:51:04.000Z"),
        ("2026-11-28", "2026-11-28T00:00:00.000Z"),
    ],
)
def test_times_are_utc_rfc3339(text: str, normal: str) -> None:
    assert timestamp(text) == normal


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "0001-01-01T00:00+01:00", "'"])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(BadValue, match="is not a time"):
        timestamp(text)
