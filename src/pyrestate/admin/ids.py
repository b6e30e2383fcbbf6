"""Resource ids in the official ``<type>_1…`` form (deployments ``dp_``, subscriptions
``sub_``): new ones, and why a text is not one."""

from __future__ import annotations

from pyrestate.core.ids import IdError, _unb62, deployment_id

# Resource types the official id decoder knows; other prefixes are "unrecognized".
_RESOURCE_TYPES = frozenset({"inv", "dp", "sub", "prom", "sign", "snap", "mut", "vq"})
_U128_DIGITS = 22


def _ulid(timestamp_ms: int, random80: int) -> bytes:
    """A ULID: 48-bit ms timestamp, then 80 random bits."""
    value = (timestamp_ms & (2**48 - 1)) << 80 | (random80 & (2**80 - 1))
    return value.to_bytes(16, "big")


def new_deployment_id(timestamp_ms: int, random80: int) -> str:
    """A ULID in the official ``dp_1…`` form."""
    return deployment_id(_ulid(timestamp_ms, random80))


def new_subscription_id(timestamp_ms: int, random80: int) -> str:
    """A ULID in the official ``sub_1…`` form (the same 128-bit encoding as ``dp_1…``)."""
    return "sub_" + new_deployment_id(timestamp_ms, random80).removeprefix("dp_")


def resource_id_error(text: str, resource_type: str) -> str | None:
    """Why ``text`` is not an id of ``resource_type`` (the official decoder's words), or None."""
    prefix, sep, rest = text.partition("_")
    if not sep:
        return "bad format" if text else "bad length"
    if prefix not in _RESOURCE_TYPES:
        return f"unrecognized resource type: {prefix}"
    if not rest:
        return "bad length"
    if rest[0] != "1":
        return "unrecognized codec version"
    if prefix != resource_type:
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


def deployment_id_error(text: str) -> str | None:
    """Why ``text`` is not a deployment id, or None."""
    return resource_id_error(text, "dp")


def subscription_id_error(text: str) -> str | None:
    """Why ``text`` is not a subscription id, or None."""
    return resource_id_error(text, "sub")
