"""A lean closed-loop HTTP/1.1 load generator on raw asyncio protocols.

The machine has two cores shared by the server, the service and this client, so the
client must cost as little as possible per request: requests are pre-formatted bytes,
responses are parsed just enough to find status and body, and one keep-alive connection
serves one closed-loop worker. Its own CPU per request is measured and reported.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

Response = tuple[int, bytes]


class HttpError(Exception):
    pass


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 keep-alive connection, one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        parsed = _parse(self.buf)
        if parsed is None:
            return
        status, body, consumed, close = parsed
        del self.buf[:consumed]
        if close:
            self.closed = True
            assert self.transport is not None
            self.transport.close()
        self.waiter.set_result((status, body))

    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter


def _parse(buf: bytearray) -> tuple[int, bytes, int, bool] | None:
    """(status, body, bytes consumed, server will close) of a complete response, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    status = int(head[9:12])
    start = end + 4
    close = b"\r\nconnection: close" in head
    i = head.find(b"\r\ncontent-length:")
    if i >= 0:
        j = head.find(b"\r\n", i + 2)
        length = int(head[i + 17 : j if j >= 0 else len(head)])
        if len(buf) < start + length:
            return None
        return status, bytes(buf[start : start + length]), start + length, close
    if b"\r\ntransfer-encoding: chunked" in head:
        body = bytearray()
        pos = start
        while True:
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
            chunk_start = line_end + 2
            if len(buf) < chunk_start + size + 2:
                return None
            if size == 0:
                # Trailers are not used by either server; expect the bare final CRLF.
                return status, bytes(body), chunk_start + 2, close
            body += buf[chunk_start : chunk_start + size]
            pos = chunk_start + size + 2
    # No length and not chunked: only bodiless statuses are expected here.
    return status, b"", start, close


class Client:
    """A connection to one host:port; reconnects after the server closes."""

    def __init__(self, host: str, port: int, timeout: float = 60.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.conn: _Conn | None = None
        self.host_header = f"Host: {host}:{port}\r\n".encode()

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Conn, self.host, self.port)
        return conn

    def format(self, method: str, path: str, body: bytes | None = None) -> bytes:
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self.host_header
        if body is None:
            return head + b"\r\n"
        if not body:
            # The ingress rejects a content-type on handlers that take no input.
            return head + b"Content-Length: 0\r\n\r\n"
        return (
            head
            + b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )

    async def send(self, request: bytes) -> Response:
        if self.conn is None or self.conn.closed:
            self.conn = await self._connect()
        try:
            return await asyncio.wait_for(self.conn.send(request), self.timeout)
        except BaseException:
            # The connection's state is unknown after a failure: start afresh next time.
            if self.conn.transport is not None:
                self.conn.transport.close()
            self.conn = None
            raise

    async def request(self, method: str, path: str, body: bytes | None = None) -> Response:
        return await self.send(self.format(method, path, body))

    def close(self) -> None:
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.close()
        self.conn = None


# A workload produces, for worker w and its sequence number i, the request bytes and a
# check that returns None when the response is right, else a short error description.
Check = Callable[[int, bytes], str | None]
MakeRequest = Callable[[Client, int, int], tuple[bytes, Check]]


@dataclass
class LoadResult:
    window_s: float
    completed: int  # responses completed inside the measured window (ok or not)
    latencies_ms: list[float]  # of ok responses completed inside the window
    total_requests: int  # all requests issued, warm-up and tail included
    failures: int  # over all requests
    failure_samples: list[str] = field(default_factory=list)
    cpu_before: dict[str, float] = field(default_factory=dict)
    cpu_after: dict[str, float] = field(default_factory=dict)


async def closed_loop(
    host: str,
    port: int,
    make: MakeRequest,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    sample: Callable[[], dict[str, float]],
    timeout: float = 60.0,
) -> LoadResult:
    """`concurrency` workers each send a request, wait for its response, and repeat.

    Only responses completing inside [start + warmup, start + warmup + duration] count
    towards throughput and latency; `sample()` (CPU counters) is called at both edges.
    Requests still in flight at the end are awaited, and checked, but not counted.
    """
    start = time.perf_counter()
    w0 = start + warmup_s
    w1 = w0 + duration_s
    latencies: list[float] = []
    completed = 0
    failures = 0
    total = 0
    samples: list[str] = []
    edges: dict[str, dict[str, float]] = {}

    async def worker(w: int) -> None:
        nonlocal completed, failures, total
        client = Client(host, port, timeout)
        i = 0
        try:
            while True:
                t0 = time.perf_counter()
                if t0 >= w1:
                    return
                error = await _checked(client, make, w, i)
                i += 1
                total += 1
                t1 = time.perf_counter()
                if error is not None:
                    failures += 1
                    if len(samples) < 5:
                        samples.append(error[:300])
                    # A refused or broken connection would otherwise spin this loop hot.
                    await asyncio.sleep(0.01)
                if w0 <= t1 < w1:
                    completed += 1
                    if error is None:
                        latencies.append((t1 - t0) * 1000)
        finally:
            client.close()

    async def edge(at: float, name: str) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        edges[name] = sample()

    await asyncio.gather(
        edge(w0, "before"), edge(w1, "after"), *(worker(w) for w in range(concurrency))
    )
    return LoadResult(
        window_s=duration_s,
        completed=completed,
        latencies_ms=latencies,
        total_requests=total,
        failures=failures,
        failure_samples=samples,
        cpu_before=edges["before"],
        cpu_after=edges["after"],
    )


@dataclass
class CountResult:
    seconds: float
    ok: int
    failures: int
    failure_samples: list[str] = field(default_factory=list)


async def closed_loop_count(
    host: str,
    port: int,
    make: MakeRequest,
    concurrency: int,
    n: int,
    progress: Callable[[int], None] | None = None,
    every: int = 0,
    max_failures: int = 100,
    timeout: float = 60.0,
) -> CountResult:
    """Like closed_loop, but for exactly n requests instead of a time window.

    `progress(done)` is called after every `every`-th response (to sample memory as work
    piles up). Stops issuing after more than max_failures failed checks, so that a dead
    server ends the run instead of failing the rest of n one by one.
    """
    issued = done = failures = 0
    samples: list[str] = []

    async def worker(w: int) -> None:
        nonlocal issued, done, failures
        client = Client(host, port, timeout)
        i = 0
        try:
            while issued < n and failures <= max_failures:
                issued += 1
                error = await _checked(client, make, w, i)
                i += 1
                done += 1
                if error is not None:
                    failures += 1
                    if len(samples) < 5:
                        samples.append(error[:300])
                if progress is not None and every > 0 and done % every == 0:
                    progress(done)
        finally:
            client.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return CountResult(time.perf_counter() - start, done - failures, failures, samples)


async def _checked(client: Client, make: MakeRequest, w: int, i: int) -> str | None:
    """Send worker ``w``'s ``i``-th request; what is wrong with the answer, or None."""
    request, check = make(client, w, i)
    try:
        status, body = await client.send(request)
        return check(status, body)
    except (OSError, HttpError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


def install_fast_loop() -> None:
    """Use uvloop when available: measured here, it cuts the client CPU per request by a third."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
