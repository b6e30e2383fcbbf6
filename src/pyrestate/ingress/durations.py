"""Durations as the official ingress accepts them: ``10s``, ``1m 30s``, ``500ms``, ``PT10S``."""

from __future__ import annotations

import math
import re

_UNITS_MS = {
    "ns": 1e-6,
    "nsec": 1e-6,
    "us": 1e-3,
    "usec": 1e-3,
    "µs": 1e-3,
    "ms": 1,
    "msec": 1,
    "millis": 1,
    "s": 1000,
    "sec": 1000,
    "secs": 1000,
    "second": 1000,
    "seconds": 1000,
    "m": 60_000,
    "min": 60_000,
    "mins": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hr": 3_600_000,
    "hrs": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "days": 86_400_000,
    "w": 604_800_000,
    "week": 604_800_000,
    "weeks": 604_800_000,
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Zµ]+)")
_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


# The longest span the official parser (jiff) takes: 19,998 years. Bigger numbers, and
# numbers too long for a float (``1e400`` digits), are refused before any arithmetic.
MAX_PARSED_MS = 631_107_417_600_000


class DurationError(ValueError):
    pass


def _bounded(total: float) -> int:
    if not math.isfinite(total) or total > MAX_PARSED_MS:
        raise DurationError(f"duration is too large, at most {MAX_PARSED_MS} ms")
    return int(total)


def parse_duration_ms(text: str) -> int:
    """Milliseconds of a human (``1h 2m``) or ISO 8601 (``PT1H2M``) duration."""
    text = text.strip()
    if not text:
        raise DurationError("empty duration")
    if text[0] in "pP":
        m = _ISO.match(text)
        if m is None or text.upper() in ("P", "PT"):
            raise DurationError(f"invalid ISO 8601 duration {text!r}")
        parts = {k: float(v) for k, v in m.groupdict().items() if v is not None}
        total = (
            parts.get("d", 0) * 86_400_000
            + parts.get("h", 0) * 3_600_000
            + parts.get("m", 0) * 60_000
            + parts.get("s", 0) * 1000
        )
        return _bounded(total)
    total = 0.0
    pos = 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if m is None:
            raise DurationError(f"invalid duration {text!r}")
        unit = _UNITS_MS.get(m.group(2))
        if unit is None:
            raise DurationError(f"unknown time unit {m.group(2)!r} in {text!r}")
        total += float(m.group(1)) * unit
        pos = m.end()
        while pos < len(text) and text[pos] in " ,":
            pos += 1
    return _bounded(total)
