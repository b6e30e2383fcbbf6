"""PostgreSQL v3 protocol framing: bounded reads of client messages, server message builders.

Every length the client sends is checked against a cap before anything is read or
allocated; a malformed message raises ``ProtocolError``, which ends that connection only.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_STARTUP_BYTES = 10_000  # PostgreSQL's own cap on a startup packet

PROTOCOL_3_0 = 196608
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_HEADER = struct.Struct(">ci")


class ProtocolError(Exception):
    """The client broke the protocol: answered with an error, then the connection closes."""


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    oid: int
    size: int  # the type's fixed size in bytes, -1 when variable


class Body:
    """A cursor over one message's body that never reads past its end."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise ProtocolError("message shorter than its contents")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def int16(self) -> int:
        return _I16.unpack(self._take(2))[0]

    def int32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def count(self) -> int:
        """A number of items to follow; each is read within bounds, so it needs no cap."""
        n = self.int16()
        if n < 0:
            raise ProtocolError(f"negative item count {n}")
        return n

    def end(self) -> None:
        if self._pos != len(self._data):
            raise ProtocolError("invalid message format: bytes after its contents")

    def byte(self) -> bytes:
        return self._take(1)

    def cstr(self) -> str:
        end = self._data.find(b"\0", self._pos)
        if end < 0:
            raise ProtocolError("unterminated string in message")
        raw = self._data[self._pos : end]
        self._pos = end + 1
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise ProtocolError("invalid UTF-8 in message") from None

    def value(self) -> bytes | None:
        """A length-prefixed value; length -1 is NULL."""
        n = self.int32()
        return None if n == -1 else self._take(n)


async def read_startup(reader: asyncio.StreamReader) -> tuple[int, Body]:
    """A startup-phase packet (no type byte): its request code and the rest of its body."""
    (length,) = _I32.unpack(await reader.readexactly(4))
    if not 8 <= length <= MAX_STARTUP_BYTES:
        raise ProtocolError(f"invalid startup packet length {length}")
    body = Body(await reader.readexactly(length - 4))
    return body.int32(), body


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, Body]:
    kind, length = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    if not 4 <= length <= MAX_MESSAGE_BYTES:
        raise ProtocolError(f"invalid message length {length}")
    return kind, Body(await reader.readexactly(length - 4))


def _message(kind: bytes, payload: bytes = b"") -> bytes:
    return kind + _I32.pack(len(payload) + 4) + payload


def _cstr(text: str) -> bytes:
    # A NUL inside would end the string early on the client; PostgreSQL text has none.
    return text.replace("\0", "").encode() + b"\0"


def authentication_ok() -> bytes:
    return _message(b"R", _I32.pack(0))


def parameter_status(name: str, value: str) -> bytes:
    return _message(b"S", _cstr(name) + _cstr(value))


def backend_key_data(pid: int, secret: int) -> bytes:
    return _message(b"K", _I32.pack(pid) + _I32.pack(secret))


def negotiate_protocol_version(minor: int, unknown: Sequence[str]) -> bytes:
    options = b"".join(_cstr(o) for o in unknown)
    return _message(b"v", _I32.pack(minor) + _I32.pack(len(unknown)) + options)


def ready_for_query(status: bytes) -> bytes:
    return _message(b"Z", status)


def row_description(fields: Sequence[Field]) -> bytes:
    parts = [_I16.pack(len(fields))]
    for f in fields:
        # table oid, column number, type oid, size, type modifier, format (text)
        parts.append(_cstr(f.name) + struct.pack(">ihihih", 0, 0, f.oid, f.size, -1, 0))
    return _message(b"T", b"".join(parts))


def data_row(values: Iterable[bytes | None]) -> bytes:
    parts = []
    count = 0
    for v in values:
        count += 1
        parts.append(_I32.pack(-1) if v is None else _I32.pack(len(v)) + v)
    return _message(b"D", _I16.pack(count) + b"".join(parts))


def command_complete(tag: str) -> bytes:
    return _message(b"C", _cstr(tag))


def error_response(code: str, message: str, hint: str | None = None) -> bytes:
    fields = b"SERROR\0VERROR\0C" + _cstr(code) + b"M" + _cstr(message)
    if hint:
        fields += b"H" + _cstr(hint)
    return _message(b"E", fields + b"\0")


def parameter_description(oids: Sequence[int]) -> bytes:
    return _message(b"t", _I16.pack(len(oids)) + b"".join(_I32.pack(o) for o in oids))


EMPTY_QUERY_RESPONSE = _message(b"I")
PARSE_COMPLETE = _message(b"1")
BIND_COMPLETE = _message(b"2")
CLOSE_COMPLETE = _message(b"3")
NO_DATA = _message(b"n")
PORTAL_SUSPENDED = _message(b"s")
