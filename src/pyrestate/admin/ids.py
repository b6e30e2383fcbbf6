"""Deployment ids: new ones in the official ``dp_1…`` form, and why a text is not one."""

from __future__ import annotations

from pyrestate.core.ids import IdError, _unb62, deployment_id

# Resource types the official id decoder knows; other prefixes are "unrecognized".
_RESOURCE_TYPES = frozenset({"inv", "dp", "sub", "prom", "sign", "snap", "mut", "vq"})
_U128_DIGITS = 22


def new_deployment_id(timestamp_ms: int, random80: int) -> str:
    """A ULID (48-bit ms timestamp, 80 random bits) in the official ``dp_1…`` form."""
    value = (timestamp_ms & (2**48 - 1)) << 80 | (random80 & (2**80 - 1))
    return deployment_id(value.to_bytes(16, "big"))


def deployment_id_error(text: str) -> str | None:
    """Why ``text`` is not a deployment id (the official decoder's words), or None."""
    prefix, sep, rest = text.partition("_")
    if not sep:
        return "bad format" if text else "bad length"
    if prefix not in _RESOURCE_TYPES:
        return f"unrecognized resource type: {prefix}"
    if not rest:
        return "bad length"
    if rest[0] != "1":
        return "unrecognized codec version"
    if prefix != "dp":
        return "id doesn't match the expected type"
    digits = rest[1:]
    if len(digits) < _U128_DIGITS:
        return "bad length"
    # The official decodes the value before it notices extra characters.
    try:
        value = _unb62(digits[:_U128_DIGITS])
    except IdError:
        return "base62 decode error"
    if value >= 2**128:
        return "base62 decode error"
    if len(digits) > _U128_DIGITS:
        return "bad length"
    return None
