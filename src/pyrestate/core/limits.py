"""Bounds for numbers that arrive from outside (ingress, admin, deployments, manifests).

Checked where they enter, so that the machine and storage only ever see values that fit
a signed 64-bit SQLite integer and make sense as epoch milliseconds or durations.
"""

from __future__ import annotations

# 9999-12-31T23:59:59.999Z: the last instant RFC 3339 timestamps (and the admin API) can show.
MAX_EPOCH_MS = 253_402_300_799_999
# About 100 years: longer delays, retentions and timeouts are surely mistakes.
MAX_DURATION_MS = 100 * 365 * 86_400_000


class OutOfRange(ValueError):
    """A number from outside does not fit; the text names the field."""


def epoch_ms(field: str, value: int) -> int:
    """``value`` if it is a usable epoch-ms instant, else ``OutOfRange`` naming ``field``."""
    if not 0 <= value <= MAX_EPOCH_MS:
        raise OutOfRange(f"{field} {value} is out of range (0..{MAX_EPOCH_MS} epoch ms)")
    return value


def duration_ms(field: str, value: int | float) -> int:
    """``value`` as whole ms if it is a usable duration, else ``OutOfRange`` naming ``field``."""
    if not 0 <= value <= MAX_DURATION_MS:  # also refuses NaN
        raise OutOfRange(f"{field} {value} is out of range (0..{MAX_DURATION_MS} ms)")
    return int(value)
