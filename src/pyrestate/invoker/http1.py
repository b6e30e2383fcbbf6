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
import collections
import ssl
import time

import h11

from pyrestate.invoker.transport import (
    DeploymentAddress,
    Response,
    TransportError,
    client_ssl_context,
    describe_os_error,
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
                headers: dict[str, str] = {}
                for name, value in event.headers:
                    key = name.decode("latin-1")
                    text = value.decode("utf-8", "replace")
                    prev = headers.get(key)
                    headers[key] = text if prev is None else f"{prev}, {text}"
                self._head = (event.status_code, headers)
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


class H1Transport:
    """HTTP/1.1 transport to one deployment (implements ``Transport``)."""

    def __init__(
        self,
        address: DeploymentAddress,
        *,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 64,
        idle_timeout: float = 4.0,
    ) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._ssl: ssl.SSLContext | None = None
        if address.scheme == "https":
            self._ssl = ssl_context or client_ssl_context("http/1.1")
        self._idle: list[_H1Connection] = []
        self._busy: set[_H1Connection] = set()
        self._count = 0  # open or opening connections, idle or busy
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._host = address.authority.encode()

    # -- Transport API ----------------------------------------------------------------

    async def open_stream(self, path: str, headers: list[tuple[str, str]]) -> H1Stream:
        return self._stream(b"POST", path, headers)

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        timeout: float = 30.0,
    ) -> Response:
        stream = self._stream(method.upper().encode(), path, headers)
        try:
            async with asyncio.timeout(timeout):
                await stream.send(body)
                status, resp_headers = await stream.response_head()
                parts = []
                while (chunk := await stream.receive()) is not None:
                    parts.append(chunk)
                return Response(status, resp_headers, b"".join(parts))
        except TimeoutError:
            raise TransportError(
                f"{method} {self.address.path_for(path)} to {self.address.display} "
                f"timed out after {timeout}s"
            ) from None
        finally:
            stream.abort()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
            self._count -= 1
        for conn in self._busy:
            # Their streams see the connection end and fail; release() does the rest.
            conn.close()
        self._wake(all_waiters=True)

    # -- pool -------------------------------------------------------------------------

    def _stream(self, method: bytes, path: str, headers: list[tuple[str, str]]) -> H1Stream:
        hdrs: list[tuple[bytes, bytes]] = [(b"host", self._host)]
        for name, value in headers:
            if name.lower() not in _DROPPED_HEADERS:
                hdrs.append((name.encode("latin-1"), value.encode("utf-8")))
        target = self.address.path_for(path).encode()
        return H1Stream(self, method, target, hdrs)

    async def acquire(self) -> _H1Connection:
        while True:
            if self._closed:
                raise TransportError(f"transport to {self.address.display} closed")
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
                        raise TransportError(f"transport to {self.address.display} closed")
                    self._busy.add(conn)
                    return conn
                except BaseException:
                    self._count -= 1
                    self._wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass the wake-up on
                raise

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
        self._wake()

    def _wake(self, all_waiters: bool = False) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not all_waiters:
                    return

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
