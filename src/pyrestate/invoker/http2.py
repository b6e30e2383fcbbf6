"""HTTP/2 client transport (h2c prior knowledge, or TLS with ALPN "h2").

Design: each connection is an ``asyncio.Protocol`` driving an ``h2.H2Connection``; a
stream is a plain object with buffers and at most one pending future, so the hot path
creates no tasks. Outgoing body chunks are queued on the stream and pushed into h2 from
one ``call_soon`` flush per loop iteration, which coalesces small chunks into few DATA
frames and one socket write. Received data is acknowledged (WINDOW_UPDATE) only when the
consumer takes it from ``receive()``, so a slow consumer back-pressures the deployment
instead of growing our buffers without bound.

Connections per deployment: streams go to the newest usable connection; another
connection is opened only when every connection is at the peer's
SETTINGS_MAX_CONCURRENT_STREAMS (up to ``max_connections``), otherwise callers wait for
a free slot. A connection is retired (no new streams; closed once its streams finish)
after ``max_streams_per_connection`` streams or ``idle_timeout`` seconds without
streams, because hypercorn closes the whole connection — killing in-flight streams —
once it has served ``keep_alive_max_requests`` (default 1000) requests on it, and closes
connections idle for 5 s (``keep_alive_timeout``).

h2 treats GOAWAY as terminal (any later frame is a protocol error), so a GOAWAY fails
every stream of the connection; streams above the peer's last-stream-id are marked
``unprocessed`` so the invoker can retry them at once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from typing import Any, cast

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hpack

from pyrestate.invoker.transport import (
    DeploymentAddress,
    Transport,
    TransportError,
    describe_os_error,
    join_headers,
)

__all__ = ["H2Transport"]

# Generous receive windows: deployments stream journal frames, sometimes large payloads;
# the stream window bounds buffering per stream, the connection window across streams.
STREAM_WINDOW = 4 * 1024 * 1024
CONNECTION_WINDOW = 64 * 1024 * 1024
MAX_FRAME_SIZE = 1024 * 1024
MAX_HEADER_LIST_SIZE = 256 * 1024
# send() waits once this much is queued but not yet allowed out by flow control.
SEND_HIGH_WATER = 1024 * 1024

_SettingCodes = h2.settings.SettingCodes
_ErrorCodes = h2.errors.ErrorCodes
# Connection-specific headers are forbidden in HTTP/2 (RFC 9113 §8.2.2); Host becomes
# :authority.
_DROPPED_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"}
)


# Request headers whose value is new on every stream: sent as never-indexed literals, so
# neither side's HPACK table churns (evicting the repeated headers) for a value seen once.
_UNIQUE_HEADERS = frozenset({"x-restate-invocation-id", "x-restate-jwt-v1", "traceparent"})


class _PlainEncoder(hpack.Encoder):
    """Header strings as they are, without Huffman coding: pure-Python Huffman costs both
    sides (this encoder, the SDK's decoder) about 0.2 us per byte, a few bytes saved per
    header on what is mostly a loopback or datacenter link."""

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        return super().encode(headers, huffman=False)


def _error_name(code: int) -> str:
    try:
        return _ErrorCodes(code).name
    except ValueError:
        return f"error code {code}"


class H2Stream:
    """One HTTP/2 request stream (implements ``ClientStream``).

    One coroutine at a time should read (``response_head``/``receive``) and one write.
    """

    __slots__ = (
        "_chunks",
        "_closed",
        "_conn",
        "_drain_waiter",
        "_end_queued",
        "_end_sent",
        "_ended",
        "_error",
        "_head",
        "_in_bytes",
        "_out",
        "_out_bytes",
        "_waiter",
        "stream_id",
        "trailers",
    )

    def __init__(self, conn: _H2Connection, stream_id: int, end_sent: bool) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self._head: tuple[int, dict[str, str]] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._in_bytes = 0  # received, not yet taken by receive(): unacknowledged
        self._ended = False  # END_STREAM received
        self._error: TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._out: collections.deque[bytes] = collections.deque()
        self._out_bytes = 0
        self._end_queued = end_sent  # end_request() called
        self._end_sent = end_sent  # END_STREAM handed to h2
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closed = False  # released from the connection (both sides done or reset)
        #: Response trailers, if the deployment sent any (lower-cased names).
        self.trailers: dict[str, str] | None = None

    # -- ClientStream API -------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        if self._end_queued:
            raise RuntimeError("send() after end_request()")
        if self._error is not None:
            raise self._error
        if self._closed or not data:
            # The response is complete and the stream released: the peer no longer
            # wants the body, dropping it is what HTTP/2 intends.
            return
        self._out.append(bytes(data))
        self._out_bytes += len(data)
        self._conn.mark_dirty(self)
        if self._out_bytes > SEND_HIGH_WATER:
            # Only large bodies wait here: the peer's window is what limits them.
            while self._out_bytes > SEND_HIGH_WATER and self._error is None and not self._closed:
                waiter = self._drain_waiter = self._conn.loop.create_future()
                await waiter
            if self._error is not None:
                raise self._error

    def write(self, data: bytes) -> None:
        if self._end_queued or self._error is not None or self._closed or not data:
            return
        self._out.append(bytes(data))
        self._out_bytes += len(data)
        self._conn.mark_dirty(self)

    async def end_request(self) -> None:
        if self._end_queued:
            return
        self._end_queued = True
        if self._error is not None:
            raise self._error
        if not self._closed:
            self._conn.mark_dirty(self)

    async def response_head(self) -> tuple[int, dict[str, str]]:
        while self._head is None:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._head

    async def receive(self) -> bytes | None:
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                if not self._closed:  # a released stream's bytes were acknowledged then
                    self._in_bytes -= len(data)
                    self._conn.ack_data(self.stream_id, len(data))
                return data
            if self._ended:
                return None
            if self._error is not None:
                raise self._error
            await self._wait()

    def abort(self) -> None:
        if self._closed:
            return
        self._conn.cancel_stream(self, _ErrorCodes.CANCEL)
        self._chunks.clear()
        if self._error is None and not self._ended:
            self._error = TransportError("stream aborted")
        self._wake()

    # -- called by the connection -----------------------------------------------------

    async def _wait(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = self._conn.loop.create_future()
        await waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        drain = self._drain_waiter
        if drain is not None:
            self._drain_waiter = None
            if not drain.done():
                drain.set_result(None)

    def _on_head(self, headers: list[tuple[bytes, bytes]]) -> None:
        status = next((int(value) for name, value in headers if name == b":status"), 0)
        self._head = (status, join_headers(headers))
        self._wake()

    def _on_data(self, data: bytes) -> None:
        self._chunks.append(data)
        self._in_bytes += len(data)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _on_end(self) -> None:
        self._ended = True
        self._wake()

    def _fail(self, error: TransportError) -> None:
        if self._error is None:
            self._error = error
        self._out.clear()
        self._out_bytes = 0
        self._wake()


class _H2Connection(asyncio.Protocol):
    def __init__(self, owner: H2Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.loop = loop
        self.address = owner.address
        self._scheme = (b":scheme", self.address.scheme.encode())
        self._authority = (b":authority", self.address.authority.encode())
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            # Our own code builds the request headers (lower-cased, no hop-by-hop
            # fields); re-validating them on every stream is wasted work.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.encoder = _PlainEncoder()
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                _SettingCodes.ENABLE_PUSH: 0,
                _SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                _SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
                _SettingCodes.MAX_FRAME_SIZE: MAX_FRAME_SIZE,
                _SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
            },
        )
        # h2 derived this from the settings it was constructed with; ours apply from the
        # start because they go out in the preface, before any stream.
        self.h2.max_inbound_frame_size = MAX_FRAME_SIZE
        self.sock: asyncio.Transport | None = None
        self.streams: dict[int, H2Stream] = {}
        self._dirty: dict[H2Stream, None] = {}  # ordered set: streams with output to push
        self._blocked: dict[H2Stream, None] = {}  # streams waiting for a WINDOW_UPDATE
        self._flush_scheduled = False
        # Resolved by the peer's first SETTINGS frame (its connection preface).
        self.ready: asyncio.Future[None] = loop.create_future()
        self.error: TransportError | None = None  # set once the connection is unusable
        self.retiring = False  # no new streams; close when the last one finishes
        self.streams_opened = 0
        self.idle_since = time.monotonic()

    # -- capacity ---------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self.error is None and not self.retiring

    def has_capacity(self) -> bool:
        return len(self.streams) < self.h2.remote_settings.max_concurrent_streams

    def retire(self) -> None:
        if self.retiring:
            return
        self.retiring = True
        self.owner.capacity_changed(all_waiters=True)
        if not self.streams:
            self.close(TransportError(f"connection to {self.address.display} retired"))

    # -- streams ----------------------------------------------------------------------

    def open_stream(
        self, method: bytes, path: str, headers: list[tuple[str, str]], end: bool
    ) -> H2Stream:
        hdrs: list[tuple[bytes, bytes]] = [
            (b":method", method),
            self._scheme,
            self._authority,
            (b":path", self.address.path_for(path).encode()),
        ]
        for name, value in headers:
            name = name.lower()
            if name in _DROPPED_HEADERS or (name == "te" and value.lower() != "trailers"):
                continue
            pair = (name.encode("latin-1"), value.encode("utf-8"))
            hdrs.append(hpack.NeverIndexedHeaderTuple(*pair) if name in _UNIQUE_HEADERS else pair)
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, hdrs, end_stream=end)
        stream = H2Stream(self, stream_id, end)
        self.streams[stream_id] = stream
        self.streams_opened += 1
        if self.streams_opened >= self.owner.max_streams_per_connection:
            self.retire()
        self.schedule_flush()
        return stream

    def mark_dirty(self, stream: H2Stream) -> None:
        self._dirty[stream] = None
        self.schedule_flush()

    def ack_data(self, stream_id: int, size: int) -> None:
        if self.error is not None or not size:
            return
        try:
            self.h2.acknowledge_received_data(size, stream_id)
        except h2.exceptions.H2Error:
            return
        self.schedule_flush()

    def cancel_stream(self, stream: H2Stream, code: int) -> None:
        """Reset the stream (if h2 still considers it open) and release its slot."""
        if stream._closed:
            return
        if self.error is None:
            try:  # noqa: SIM105 - hot path; suppress() costs a context manager per call
                self.h2.reset_stream(stream.stream_id, code)
            except h2.exceptions.H2Error:
                pass  # already closed on the h2 side
            self.schedule_flush()
        self._release(stream)

    def _release(self, stream: H2Stream) -> None:
        stream._closed = True
        if self.streams.pop(stream.stream_id, None) is None:
            return
        self._dirty.pop(stream, None)
        self._blocked.pop(stream, None)
        if stream._in_bytes:
            # Unread data still occupies the connection window; hand it back now (the
            # chunks stay readable, e.g. a complete response followed by RST_STREAM).
            self.ack_data(stream.stream_id, stream._in_bytes)
            stream._in_bytes = 0
        stream._out.clear()
        stream._out_bytes = 0
        stream._wake()
        if not self.streams:
            self.idle_since = time.monotonic()
            if self.retiring and self.error is None:
                self.close(TransportError(f"connection to {self.address.display} retired"))
                return
        self.owner.capacity_changed()

    # -- output -----------------------------------------------------------------------

    def schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.error is not None:
            return
        try:
            if self._dirty:
                dirty = self._dirty
                self._dirty = {}
                for stream in dirty:
                    self._push(stream)
            data = self.h2.data_to_send()
        except h2.exceptions.ProtocolError as exc:
            self._fatal(TransportError(f"HTTP/2 protocol error on {self.address.display}: {exc}"))
            return
        if data and self.error is None and self.sock is not None:
            self.sock.write(data)

    def _push(self, stream: H2Stream) -> None:
        """Move queued body chunks into h2 as far as the flow-control windows allow."""
        if stream._closed:
            return
        h2conn = self.h2
        sid = stream.stream_id
        out = stream._out
        try:
            while out:
                window = min(h2conn.local_flow_control_window(sid), h2conn.max_outbound_frame_size)
                if window <= 0:
                    self._blocked[stream] = None
                    break
                # Coalesce small chunks into one DATA frame.
                if len(out) > 1 and len(out[0]) < window:
                    parts: list[bytes] = []
                    size = 0
                    while out and size + len(out[0]) <= window:
                        chunk = out.popleft()
                        parts.append(chunk)
                        size += len(chunk)
                    chunk = b"".join(parts)
                else:
                    chunk = out.popleft()
                    if len(chunk) > window:
                        out.appendleft(chunk[window:])
                        chunk = chunk[:window]
                stream._out_bytes -= len(chunk)
                h2conn.send_data(sid, chunk)
            if not out and stream._end_queued and not stream._end_sent:
                stream._end_sent = True
                h2conn.end_stream(sid)
        except h2.exceptions.StreamClosedError:
            # The peer reset the stream; the StreamReset event reports why.
            out.clear()
            stream._out_bytes = 0
        if stream._drain_waiter is not None and stream._out_bytes <= SEND_HIGH_WATER:
            stream._wake()
        if stream._end_sent and stream._ended:
            self._release(stream)

    def _unblock(self, stream_id: int) -> None:
        if not self._blocked:
            return
        if stream_id == 0:
            blocked = self._blocked
            self._blocked = {}
            self._dirty.update(blocked)
        else:
            stream = self.streams.get(stream_id)
            if stream is not None and stream in self._blocked:
                del self._blocked[stream]
                self._dirty[stream] = None

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.sock = cast(asyncio.Transport, transport)
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.sock.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fatal(TransportError(f"HTTP/2 protocol error from {self.address.display}: {exc}"))
            return
        streams = self.streams
        for event in events:
            # Ordered by frequency on the hot path.
            if isinstance(event, h2.events.DataReceived):
                stream = streams.get(event.stream_id)
                flow = event.flow_controlled_length
                data_ = event.data
                if stream is None:
                    self.ack_data(event.stream_id, flow)
                    continue
                if flow > len(data_):
                    self.ack_data(event.stream_id, flow - len(data_))  # padding
                if data_:
                    stream._on_data(data_)
            elif isinstance(event, h2.events.ResponseReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._on_head(event.headers)
            elif isinstance(event, h2.events.StreamEnded):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream._on_end()
                    if stream._end_sent:
                        self._release(stream)
                    else:
                        # The response is complete, so the rest of the request body is
                        # moot: reset instead of sending more DATA. Besides freeing the
                        # slot now, this matters for hypercorn, which kills the whole
                        # connection on DATA for a stream whose app already finished.
                        self.cancel_stream(stream, _ErrorCodes.NO_ERROR)
            elif isinstance(event, h2.events.WindowUpdated):
                self._unblock(event.stream_id)
            elif isinstance(event, h2.events.StreamReset):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    self._on_reset(stream, event.error_code)
            elif isinstance(event, h2.events.TrailersReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    stream.trailers = {
                        n.decode("latin-1"): v.decode("utf-8", "replace") for n, v in event.headers
                    }
            elif isinstance(event, h2.events.RemoteSettingsChanged):
                changed = event.changed_settings
                if _SettingCodes.INITIAL_WINDOW_SIZE in changed:
                    self._unblock(0)
                if _SettingCodes.MAX_CONCURRENT_STREAMS in changed:
                    if self.h2.remote_settings.max_concurrent_streams == 0:
                        # The peer takes no new streams here (hypercorn does this while
                        # shutting down): let new streams go to a fresh connection.
                        self.retire()
                    self.owner.capacity_changed(all_waiters=True)
                if not self.ready.done():
                    self.ready.set_result(None)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self._on_goaway(event)
                return
        self._flush()

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.sock = None
        cause = f": {describe_os_error(exc)}" if exc is not None else ""
        self._fatal(TransportError(f"connection to {self.address.display} lost{cause}"))

    # -- failure ----------------------------------------------------------------------

    def _on_reset(self, stream: H2Stream, code: int) -> None:
        if not (stream._ended and code == _ErrorCodes.NO_ERROR):
            # RST_STREAM(NO_ERROR) after a complete response only means "stop sending
            # the request body" (RFC 9113 §8.1); anything else fails the exchange.
            stream._fail(
                TransportError(
                    f"stream reset by {self.address.display}: {_error_name(code)}",
                    unprocessed=code == _ErrorCodes.REFUSED_STREAM,
                )
            )
        self._release(stream)

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        last = event.last_stream_id if event.last_stream_id is not None else 0
        code = event.error_code if event.error_code is not None else 0
        detail = f"GOAWAY {_error_name(code)}"
        if event.additional_data:
            detail += f" ({event.additional_data.decode('utf-8', 'replace')})"
        for sid, stream in list(self.streams.items()):
            stream._fail(
                TransportError(
                    f"connection closed by {self.address.display}: {detail}",
                    unprocessed=sid > last,
                )
            )
        self._fatal(TransportError(f"connection closed by {self.address.display}: {detail}"))

    def _fatal(self, error: TransportError) -> None:
        """The connection is unusable: fail every stream and close the socket."""
        if self.error is None:
            self.error = error
            if not self.ready.done():
                self.ready.set_exception(error)
                self.ready.exception()  # mark retrieved: the connector may be gone
            for stream in list(self.streams.values()):
                stream._fail(error)
                stream._closed = True
                stream._wake()
            self.streams.clear()
            self._dirty.clear()
            self._blocked.clear()
            self.owner.connection_gone(self)
        if self.sock is not None and not self.sock.is_closing():
            data = self.h2.data_to_send()  # e.g. the GOAWAY h2 queued
            if data:
                self.sock.write(data)
            self.sock.close()

    def close(self, error: TransportError) -> None:
        if self.error is None and self.sock is not None:
            with contextlib.suppress(h2.exceptions.H2Error):
                self.h2.close_connection()
        self._fatal(error)


class H2Transport(Transport):
    """HTTP/2 transport to one deployment; other ``options`` as for ``Transport``."""

    alpn = "h2"
    max_connections = 32

    def __init__(
        self, address: DeploymentAddress, *, max_streams_per_connection: int = 1000, **options: Any
    ) -> None:
        super().__init__(address, **options)
        self.max_streams_per_connection = max_streams_per_connection
        self._conns: list[_H2Connection] = []
        self._connecting: asyncio.Task[_H2Connection] | None = None

    # -- Transport API ----------------------------------------------------------------

    async def aclose(self) -> None:
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        for conn in list(self._conns):
            conn.close(self._closed_error())
        self._conns.clear()
        self.capacity_changed(all_waiters=True)

    def open_connections(self) -> int:
        # Retiring ones too: their sockets stay open until their last stream ends.
        return len(self._conns)

    # -- connection pool --------------------------------------------------------------

    async def _open(
        self, method: bytes, path: str, headers: list[tuple[str, str]], *, end: bool
    ) -> H2Stream:
        conn = await self._acquire()
        return conn.open_stream(method, path, headers, end)

    async def _acquire(self) -> _H2Connection:
        while True:
            if self._closed:
                raise self._closed_error()
            conn = self._pick()
            if conn is not None:
                return conn
            if self._connecting is None and self._live_count() < self.max_connections:
                task = asyncio.get_running_loop().create_task(self._connect())
                # Retrieve the exception even if every waiter went away meanwhile.
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
                self._connecting = task
            task = self._connecting
            if task is not None:
                # asyncio.wait, not await: one caller's cancellation must not abort the
                # connect that others share.
                await asyncio.wait((task,))
                if not task.cancelled() and (exc := task.exception()) is not None:
                    unprocessed = isinstance(exc, TransportError) and exc.unprocessed
                    raise TransportError(str(exc), unprocessed=unprocessed)
                continue
            await self._wait_for_capacity()

    def _pick(self) -> _H2Connection | None:
        # Newest first: older connections drain and get retired sooner. (A copy: retiring
        # an idle connection removes it from the list.)
        for conn in self._conns[::-1]:
            if not conn.usable:
                continue
            if not conn.streams and time.monotonic() - conn.idle_since > self.idle_timeout:
                # The deployment may be about to close it (hypercorn: 5 s idle);
                # a fresh connection avoids racing that close.
                conn.retire()
                continue
            if conn.has_capacity():
                return conn
        return None

    def _live_count(self) -> int:
        return sum(1 for c in self._conns if c.usable)

    async def _connect(self) -> _H2Connection:
        loop = asyncio.get_running_loop()
        address = self.address
        conn = _H2Connection(self, loop)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(
                    lambda: conn,
                    address.host,
                    address.port,
                    ssl=self._ssl,
                    server_hostname=address.host if self._ssl else None,
                )
                if self._ssl is not None:
                    assert conn.sock is not None
                    ssl_obj = conn.sock.get_extra_info("ssl_object")
                    if ssl_obj is None or ssl_obj.selected_alpn_protocol() != "h2":
                        raise TransportError(
                            f"{address.display} did not negotiate HTTP/2 (ALPN h2) over TLS"
                        )
                # The peer's SETTINGS tell us its stream limit; opening streams before
                # that could exceed it (h2 servers answer with a connection error).
                await conn.ready
        except TransportError as exc:
            conn._fatal(exc)
            raise TransportError(
                f"cannot connect to {address.display} via HTTP/2: {exc}", unprocessed=True
            ) from None
        except (OSError, TimeoutError) as exc:
            conn._fatal(TransportError(str(exc)))
            raise TransportError(
                f"{describe_os_error(exc)} to {address.display} (HTTP/2)", unprocessed=True
            ) from None
        except BaseException:  # cancelled (aclose): do not leak a half-set-up socket
            conn._fatal(TransportError(f"connect to {address.display} cancelled"))
            raise
        finally:
            self._connecting = None
        if self._closed:
            conn.close(self._closed_error())
            raise self._closed_error()
        if conn.error is not None:  # died right after its SETTINGS arrived
            raise TransportError(str(conn.error), unprocessed=True)
        self._conns.append(conn)
        return conn

    def connection_gone(self, conn: _H2Connection) -> None:
        with contextlib.suppress(ValueError):
            self._conns.remove(conn)
        self.capacity_changed(all_waiters=True)
