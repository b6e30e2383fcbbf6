"""Identifiers with the official server's textual forms.

An invocation id is a 64-bit partition key plus a 128-bit uuid. Its text form is
``inv_1`` + the partition key in 11 base62 digits + the uuid in 22 base62 digits; its
byte form (sent to SDKs in StartMessage.id) is the 8 big-endian key bytes then the 16
uuid bytes. Awakeable ids are ``sign_1`` (or the older ``prom_1``) + urlsafe base64 of
the invocation id bytes and a 32-bit big-endian signal/entry index.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
_PK_DIGITS = 11
_UUID_DIGITS = 22
PARTITION_KEY_SPACE = 1 << 64


class IdError(ValueError):
    """A string that should be an id is not one."""


def _b62(value: int, width: int) -> str:
    out = []
    while value:
        value, r = divmod(value, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)).rjust(width, "0")


def _unb62(text: str) -> int:
    value = 0
    for c in text:
        digit = _INDEX.get(c)
        if digit is None:
            raise IdError(f"invalid character {c!r}")
        value = value * 62 + digit
    return value


def _swap(raw: bytes) -> int:
    # The official encoder writes the big-endian bytes read as a little-endian number.
    return int.from_bytes(raw, "little")


def partition_key_of(key: str | bytes) -> int:
    """Stable partition key of an object/workflow key (or of an idempotency scope)."""
    data = key.encode() if isinstance(key, str) else key
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class InvocationId:
    partition_key: int
    uuid: bytes  # 16 bytes
    # The text form, computed once: it is needed several times per invocation.
    _text: str | None = field(default=None, compare=False, repr=False)

    def to_bytes(self) -> bytes:
        return self.partition_key.to_bytes(8, "big") + self.uuid

    @classmethod
    def from_bytes(cls, raw: bytes) -> InvocationId:
        if len(raw) != 24:
            raise IdError(f"invocation id must be 24 bytes, got {len(raw)}")
        return cls(int.from_bytes(raw[:8], "big"), bytes(raw[8:]))

    def __str__(self) -> str:
        text = self._text
        if text is None:
            text = (
                "inv_1"
                + _b62(_swap(self.partition_key.to_bytes(8, "big")), _PK_DIGITS)
                + _b62(_swap(self.uuid), _UUID_DIGITS)
            )
            object.__setattr__(self, "_text", text)
        return text

    @classmethod
    def parse(cls, text: str) -> InvocationId:
        """Raises IdError whose text is the official reason (bad format, bad length...)."""
        prefix, sep, rest = text.partition("_")
        if not sep:
            raise IdError("bad format")
        if prefix != "inv" or not rest.startswith("1"):
            raise IdError("unrecognized codec version" if prefix == "inv" else "bad format")
        if len(text) != 5 + _PK_DIGITS + _UUID_DIGITS:
            raise IdError("bad length")
        body = text[5:]
        try:
            pk_swapped = _unb62(body[:_PK_DIGITS])
            uuid_swapped = _unb62(body[_PK_DIGITS:])
            pk = int.from_bytes(pk_swapped.to_bytes(8, "little"), "big")
            uuid = uuid_swapped.to_bytes(16, "little")
        except (OverflowError, IdError) as e:
            raise IdError("base62 decode error") from e
        return cls(pk, uuid, text)

    def random_seed(self) -> int:
        """Seed for the SDK's deterministic RNG, stable for the life of the invocation."""
        return int.from_bytes(hashlib.blake2b(self.to_bytes(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class AwakeableId:
    invocation_id: InvocationId
    # For ``sign_1`` ids the signal index; for legacy ``prom_1`` ids the journal entry index.
    index: int
    legacy: bool = False

    def __str__(self) -> str:
        raw = self.invocation_id.to_bytes() + self.index.to_bytes(4, "big")
        prefix = "prom_1" if self.legacy else "sign_1"
        return prefix + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def parse(cls, text: str) -> AwakeableId:
        prefix, sep, rest = text.partition("_")
        if not sep or prefix not in ("sign", "prom"):
            raise IdError("bad format")
        if not rest.startswith("1"):
            raise IdError("unrecognized codec version")
        legacy = prefix == "prom"
        body = rest[1:]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (ValueError, TypeError) as e:
            raise IdError("id doesn't match the expected type") from e
        if len(raw) != 28:
            raise IdError("id doesn't match the expected type")
        return cls(InvocationId.from_bytes(raw[:24]), int.from_bytes(raw[24:], "big"), legacy)


def deployment_id(raw: bytes) -> str:
    """``dp_1`` + a 128-bit value in base62, the official deployment id form."""
    return "dp_1" + _b62(_swap(raw), _UUID_DIGITS)


def new_invocation_id(
    entropy: bytes,
    *,
    service: str,
    handler: str,
    key: str | None,
    idempotency_key: str | None,
) -> InvocationId:
    """An id whose partition key routes the invocation by object key, else at random.

    With an idempotency key the id is derived from the target and that key, as the
    official server does: a duplicate request gets the same id and meets the first one
    in the same partition, and clients can attach to it knowing only the key.
    ``entropy``: 24 random bytes, used only without an idempotency key.
    """
    if idempotency_key is not None:
        digest = hashlib.blake2b(
            "\0".join((service, key or "", handler, idempotency_key)).encode(), digest_size=24
        ).digest()
        pk = partition_key_of(key) if key is not None else int.from_bytes(digest[16:], "big")
        return InvocationId(pk, digest[:16])
    pk = partition_key_of(key) if key is not None else int.from_bytes(entropy[16:24], "big")
    return InvocationId(pk, entropy[:16])
