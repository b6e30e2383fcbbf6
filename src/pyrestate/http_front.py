"""The HTTP front doors (ingress and admin) as uvicorn servers, with limits for hostile clients.

uvicorn with httptools bounds neither the time a client may take to send a request head
nor the size of that head: a client that trickles header bytes (slowloris) holds its
connection for ever, and llhttp buffers a header until its line ends, however long.
`_GuardedHttpTools` adds both bounds to uvicorn's httptools protocol, the way the
official server (hyper) has them: a header read timeout that closes the connection, and
``431 Request Header Fields Too Large`` for a head over the size or header-count limit.
It also tells every unfinished request of a lost connection that its client is gone:
uvicorn tells only the latest, so a request with a pipelined one queued behind it would
never see ``http.disconnect`` and, under uvloop, fail writing to the closed socket. It
stays a subclass rather than its own protocol so that everything else (keep-alive,
pipelining, flow control) remains uvicorn's.

The in-flight limit is an ASGI wrapper rather than uvicorn's ``limit_concurrency``: that
one also counts idle keep-alive connections and answers a bare ``text/plain`` 503, where
each door here answers in its own error format, with ``retry-after``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from pyrestate.asgi import Receive, Scope, Send
from pyrestate.config import split_bind

ASGIApp = Any  # an ASGI 3 callable: (scope, receive, send) -> awaitable


@dataclass(frozen=True, slots=True)
class FrontLimits:
    # Requests being handled at once (waiting calls included); beyond: 503.
    max_in_flight: int = 10_000
    # From the first byte of a request (or the connection) to the end of its head.
    header_timeout_s: float = 30.0
    # Request line and headers together. hyper allows ~448 KiB; 64 KiB is plenty for
    # real clients and keeps 10k slow connections from pinning gigabytes.
    max_head_bytes: int = 64 * 1024
    # The official server answers 431 beyond 100 headers.
    max_headers: int = 100
    keep_alive_s: int = 60


_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"connection: close\r\ncontent-length: 0\r\n\r\n"
)


class _TooManyHeaders(Exception):
    """Raised from a parser callback to stop httptools mid-head."""


class _GuardedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a header read timeout and head size limits."""

    limits: ClassVar[FrontLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._too_many_headers = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._cycles: list[RequestResponseCycle] = []  # this connection's, unfinished

    def _start_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(
                self.limits.header_timeout_s, self._head_timed_out
            )

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse_head(self) -> None:
        self._end_head()
        self.transport.write(_431)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # The first request's head must come within the timeout, even its first byte.
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        for cycle in self._cycles:
            if not cycle.response_complete:
                cycle.disconnected = True
                cycle.message_event.set()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # Counted after parsing so that a head completed within `data` is never refused
        # for the body bytes that follow it in the same read.
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse_head()
            else:
                # Only a head left incomplete gets a timer: most arrive in one read, and
                # a timer per request would cost every request.
                self._arm_head_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a later request on a kept-alive connection
            self._start_head()

    def on_headers_complete(self) -> None:
        self._end_head()
        # Counted once the head is in (bounded by max_head_bytes), not per header callback.
        if len(self.headers) > self.limits.max_headers:
            self._too_many_headers = True
            raise _TooManyHeaders
        super().on_headers_complete()
        self._cycles = [c for c in self._cycles if not c.response_complete]
        if self.cycle is not None and self.cycle not in self._cycles:
            self._cycles.append(self.cycle)

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser failure with 400; the one we caused is a 431.
        if self._too_many_headers:
            self._refuse_head()
            return
        super().send_400_response(msg)


def _protocol_class(limits: FrontLimits) -> type[HttpToolsProtocol]:
    # uvicorn instantiates the class itself, so the limits travel as a class attribute.
    return type("GuardedHttpTools", (_GuardedHttpTools,), {"limits": limits})


class InFlightLimit:
    """Answers with ``overloaded`` while ``limit`` requests are already being handled."""

    def __init__(self, app: ASGIApp, limit: int, overloaded: ASGIApp) -> None:
        self._app = app
        self._limit = limit
        self._overloaded = overloaded
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if self.in_flight >= self._limit:
            await self._overloaded(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def start_front_door(
    app: ASGIApp, bind: str, *, overloaded: ASGIApp, limits: FrontLimits | None = None
) -> uvicorn.Server:
    """Listen on ``bind`` with ``app`` behind the limits; the caller runs ``main_loop()``."""
    limits = limits or FrontLimits()
    host, port = split_bind(bind)
    config = uvicorn.Config(
        InFlightLimit(app, limits.max_in_flight, overloaded),
        host=host,
        port=port,
        lifespan="off",
        log_config=None,  # uvicorn's records go through the server's handlers and format
        log_level="warning",
        access_log=False,
        http=_protocol_class(limits),
        loop="none",
        timeout_keep_alive=limits.keep_alive_s,
        timeout_graceful_shutdown=5,
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup()
    if server.should_exit:
        raise OSError(f"cannot listen on {bind}")
    return server
