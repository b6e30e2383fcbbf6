"""HTTP/1.1 client transport (request/response) over a keep-alive connection pool.

The request body is buffered until ``end_request()``, then the whole request goes out in
one write with a Content-Length, then the response is read (content-length, chunked or
read-until-close framing, all handled by h11). A connection goes back to the pool only
when both sides of the exchange finished cleanly; anything else closes it.

A pooled connection may have been closed by the server while idle (hypercorn: after 5 s).
If a reused connection fails before any response byte arrived, the request is sent once
more on a fresh connection: the server cannot have answered it, and for the service
protocol a duplicate attempt is harmless anyway.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h11

from pyrestate.invoker.transport import (
    DeploymentAddress,
    Transport,
    TransportError,
    describe_os_error,
    join_headers,
)

__all__ = ["H1Transport"]

READ_SIZE = 256 * 1024
# Framing headers are ours to set; Host comes from the deployment URI.
_DROPPED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
)
_NO_BODY_METHODS = frozenset({b"GET", b"HEAD", b"DELETE", b"OPTIONS"})


class _H1Connection:
    __slots__ = ("h11", "idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.idle_since = 0.0

    @property
    def reused(self) -> bool:
        return self.idle_since != 0.0

    def close(self) -> None:
        # abort(), not close(): nothing useful is left to flush and we want the
        # socket gone now.
        self.writer.transport.abort()


class H1Stream:
    """One HTTP/1.1 exchange (implements ``ClientStream``)."""

    __slots__ = (
        "_body",
        "_conn",
        "_done",
        "_error",
        "_head",
        "_headers",
        "_method",
        "_owner",
        "_request",
        "_request_body",
        "_reused",
        "_target",
    )

    def __init__(
        self, owner: H1Transport, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self._owner = owner
        self._method = method
        self._target = target
        self._headers = headers
        self._body: list[bytes] | None = []  # None once end_request() was called
        # Kept until the response head arrives, to resend on a stale pooled connection.
        self._request: h11.Request | None = None
        self._request_body = b""
        self._reused = False  # the current connection served an earlier exchange
        self._conn: _H1Connection | None = None
        self._head: tuple[int, dict[str, str]] | None = None
        self._error: TransportError | None = None
        self._done = False  # EndOfMessage seen

    # -- ClientStream API -------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        if self._body is None:
            raise RuntimeError("send() after end_request()")
        if data:
            self._body.append(bytes(data))

    def write(self, data: bytes) -> None:
        if self._body is not None and data:
            self._body.append(bytes(data))

    async def end_request(self) -> None:
        if self._body is None:
            return
        body = b"".join(self._body)
        self._body = None
        headers = self._headers
        if body or self._method not in _NO_BODY_METHODS:
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        self._request = h11.Request(method=self._method, target=self._target, headers=headers)
        self._request_body = body
        await self._send_request(retry=True)

    async def response_head(self) -> tuple[int, dict[str, str]]:
        if self._body is not None:
            await self.end_request()
        while self._head is None:
            if self._error is not None:
                raise self._error
            try:
                await self._read_head()
            except _StaleConnection:
                self._drop_connection()
                if self._error is not None:
                    raise self._error from None
                if not self._reused:
                    raise self._fail(_StaleConnection()) from None
                await self._send_request(retry=False)
            except (OSError, h11.ProtocolError) as exc:
                self._drop_connection()
                raise self._fail(exc) from None
        return self._head

    async def receive(self) -> bytes | None:
        if self._head is None:
            await self.response_head()
        if self._done:
            return None
        if self._error is not None:
            raise self._error
        conn = self._conn
        assert conn is not None
        try:
            while True:
                event = conn.h11.next_event()
                if event is h11.NEED_DATA:
                    data = await conn.reader.read(READ_SIZE)
                    if self._error is not None:
                        raise self._error
                    conn.h11.receive_data(data)
                    continue
                if isinstance(event, h11.Data):
                    if event.data:
                        return bytes(event.data)
                    continue
                if isinstance(event, h11.EndOfMessage):
                    self._done = True
                    self._conn = None
                    state = conn.h11
                    self._owner.release(
                        conn, reusable=state.our_state is h11.DONE and state.their_state is h11.DONE
                    )
                    return None
                if isinstance(event, h11.ConnectionClosed):
                    raise self._fail(ConnectionResetError("closed mid-response"))
        except TransportError:
            self._drop_connection()
            raise
        except (OSError, h11.ProtocolError) as exc:
            self._drop_connection()
            raise self._fail(exc) from None

    def abort(self) -> None:
        if self._done:
            return
        if self._error is None:
            self._error = TransportError("stream aborted")
        self._body = None
        self._drop_connection()

    # -- internals --------------------------------------------------------------------

    async def _send_request(self, *, retry: bool) -> None:
        owner = self._owner
        while True:
            conn = await owner.acquire()
            if self._error is not None:  # aborted while waiting for a connection
                owner.release(conn, reusable=True)
                raise self._error
            self._conn = conn
            self._reused = conn.reused
            try:
                assert self._request is not None
                state = conn.h11
                payload = state.send(self._request) or b""
                if self._request_body:
                    payload += state.send(h11.Data(data=self._request_body)) or b""
                payload += state.send(h11.EndOfMessage()) or b""
                conn.writer.write(payload)
                await conn.writer.drain()
                return
            except h11.LocalProtocolError as exc:
                # Bad headers from our caller: not the connection's fault, but its h11
                # state is now unusable.
                self._drop_connection()
                raise self._fail(exc) from None
            except OSError as exc:
                self._drop_connection()
                if self._error is not None:
                    raise self._error from None
                if retry and self._reused:
                    retry = False
                    continue
                raise self._fail(exc) from None

    async def _read_head(self) -> None:
        conn = self._conn
        assert conn is not None
        got_bytes = False
        while True:
            event = conn.h11.next_event()
            if event is h11.NEED_DATA:
                try:
                    data = await conn.reader.read(READ_SIZE)
                except ConnectionResetError:
                    if got_bytes:
                        raise
                    raise _StaleConnection from None
                if self._error is not None:
                    raise self._error
                if not data and not got_bytes:
                    raise _StaleConnection
                got_bytes = True
                conn.h11.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                self._head = (event.status_code, join_headers(event.headers))
                self._request = None
                self._request_body = b""
                return
            if isinstance(event, h11.ConnectionClosed):
                raise _StaleConnection
            # InformationalResponse (1xx): keep reading for the final response.

    def _drop_connection(self) -> None:
        conn = self._conn
        if conn is not None:
            self._conn = None
            self._owner.release(conn, reusable=False)

    def _fail(self, exc: BaseException) -> TransportError:
        address = self._owner.address.display
        if isinstance(exc, _StaleConnection):
            error = TransportError(f"connection to {address} closed before a response")
        elif isinstance(exc, h11.LocalProtocolError):
            error = TransportError(f"invalid HTTP/1.1 request to {address}: {exc}")
        elif isinstance(exc, h11.ProtocolError):
            error = TransportError(f"HTTP/1.1 protocol error from {address}: {exc}")
        else:
            error = TransportError(f"connection to {address} failed: {describe_os_error(exc)}")
        if self._error is None:
            self._error = error
        return self._error


class _StaleConnection(Exception):
    """The server closed the connection before sending any response byte."""


class H1Transport(Transport):
    """HTTP/1.1 transport to one deployment; ``options`` as for ``Transport``."""

    alpn = "http/1.1"
    max_connections = 64

    def __init__(self, address: DeploymentAddress, **options: Any) -> None:
        super().__init__(address, **options)
        self._idle: list[_H1Connection] = []
        self._busy: set[_H1Connection] = set()
        self._count = 0  # open or opening connections, idle or busy
        self._host = address.authority.encode()

    # -- Transport API ----------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
            self._count -= 1
        for conn in self._busy:
            # Their streams see the connection end and fail; release() does the rest.
            conn.close()
        self.capacity_changed(all_waiters=True)

    def open_connections(self) -> int:
        # Not _count: that includes connections still being set up.
        return len(self._idle) + len(self._busy)

    # -- pool -------------------------------------------------------------------------

    async def _open(
        self, method: bytes, path: str, headers: list[tuple[str, str]], *, end: bool
    ) -> H1Stream:
        # ``end`` needs no handling: the request goes out whole at end_request().
        hdrs: list[tuple[bytes, bytes]] = [(b"host", self._host)]
        for name, value in headers:
            if name.lower() not in _DROPPED_HEADERS:
                hdrs.append((name.encode("latin-1"), value.encode("utf-8")))
        target = self.address.path_for(path).encode()
        return H1Stream(self, method, target, hdrs)

    async def acquire(self) -> _H1Connection:
        while True:
            if self._closed:
                raise self._closed_error()
            now = time.monotonic()
            while self._idle:
                conn = self._idle.pop()  # most recently used: least likely to be stale
                if (
                    now - conn.idle_since < self.idle_timeout
                    and not conn.reader.at_eof()
                    and not conn.writer.is_closing()
                ):
                    self._busy.add(conn)
                    return conn
                conn.close()
                self._count -= 1
            if self._count < self.max_connections:
                self._count += 1
                try:
                    conn = await self._connect()
                    if self._closed:
                        conn.close()
                        raise self._closed_error()
                    self._busy.add(conn)
                    return conn
                except BaseException:
                    self._count -= 1
                    self.capacity_changed()
                    raise
            await self._wait_for_capacity()

    def release(self, conn: _H1Connection, *, reusable: bool) -> None:
        self._busy.discard(conn)
        if reusable and not self._closed and conn.h11.our_state is not h11.IDLE:
            try:
                conn.h11.start_next_cycle()  # only valid after a complete exchange
            except h11.LocalProtocolError:
                reusable = False
        if reusable and not self._closed:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
            self._count -= 1
        self.capacity_changed()

    async def _connect(self) -> _H1Connection:
        address = self.address
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    address.host,
                    address.port,
                    ssl=self._ssl,
                    server_hostname=address.host if self._ssl else None,
                    limit=READ_SIZE,
                )
        except (OSError, TimeoutError) as exc:
            raise TransportError(
                f"{describe_os_error(exc)} to {address.display} (HTTP/1.1)", unprocessed=True
            ) from None
        return _H1Connection(reader, writer)
