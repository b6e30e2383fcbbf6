"""Identifiers with the official server's textual forms.

An invocation id is a 64-bit partition key plus a 128-bit uuid. Its text form is
``inv_1`` + the partition key in 11 base62 digits + the uuid in 22 base62 digits; its
byte form (sent to SDKs in StartMessage.id) is the 8 big-endian key bytes then the 16
uuid bytes. Awakeable ids are ``sign_1`` (or the older ``prom_1``) + urlsafe base64 of
the invocation id bytes and a 32-bit big-endian signal/entry index.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass, field

import xxhash

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


def _rust_hash(*parts: str | int) -> int:
    """xxh3-64 of the bytes Rust's ``Hash`` feeds a hasher for a tuple of str and u64.

    The official server hashes keys this way into partition keys; ids derived from keys
    must agree with it bit for bit (clients and the CLI compute them too).
    """
    data = bytearray()
    for part in parts:
        if isinstance(part, str):
            data += part.encode()
            data.append(0xFF)  # a str hashes as its bytes then a 0xff terminator
        else:
            data += part.to_bytes(8, "little")
    return xxhash.xxh3_64_intdigest(bytes(data))


def partition_key_of(key: str) -> int:
    """Partition key of an object/workflow key, as the official server computes it."""
    return _rust_hash(key)


# An unkeyed service spreads over this many partition keys of its own (official constant).
_SERVICE_FANOUT = 512


@functools.lru_cache(maxsize=4096)
def _service_partition_key(service: str, bucket: int) -> int:
    # Cached: every new invocation of an unkeyed service needs one of 512 per service.
    return _rust_hash(service, "unscoped/service", bucket)


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
    workflow_run: bool = False,
) -> InvocationId:
    """An invocation's id, derived as the official server derives it.

    A workflow's run gets an id from the workflow name and key, an idempotent request one
    from its target and idempotency key: a duplicate meets the first request, and clients
    can attach knowing only the key. Others get a random uuid. The partition key follows
    the object/workflow key, else the idempotency key, else a random one of the service's
    keys. ``entropy``: 24 random bytes, used only for what is not derived.
    """
    if workflow_run:
        assert key is not None, "a workflow run has a key"
        uuid = _sha16("wf", service, key)
    elif idempotency_key is not None:
        keyed = (service, key) if key is not None else (service,)
        uuid = _sha16("ik", *keyed, handler, idempotency_key)
    else:
        uuid = entropy[:16]
    if key is not None:
        pk = partition_key_of(key)
    elif idempotency_key is not None:
        pk = _service_partition_key(service, _rust_hash(idempotency_key) % _SERVICE_FANOUT)
    else:
        pk = _service_partition_key(service, int.from_bytes(entropy[16:24]) % _SERVICE_FANOUT)
    return InvocationId(pk, uuid)


def workflow_run_id(workflow: str, key: str) -> InvocationId:
    """The id of a workflow's run: its name and key decide it (attach/output by key)."""
    return new_invocation_id(
        b"", service=workflow, handler="", key=key, idempotency_key=None, workflow_run=True
    )


def _sha16(*parts: str) -> bytes:
    return hashlib.sha256(",".join(parts).encode()).digest()[:16]
