"""Client-side transports the invoker uses to reach service deployments.

Three implementations sit behind one interface:

- ``HTTP/2.0``: cleartext HTTP/2 with prior knowledge (h2c), full-duplex streams
  multiplexed on a connection per deployment (see ``http2.py``).
- ``HTTP/1.1``: request/response over a keep-alive connection pool: the whole request
  body goes out at ``end_request()``, then the response is read (see ``http1.py``).
- in-process: an SDK's ASGI app in this process, for ``asgi://`` URIs (``inprocess.py``).

Usage of a stream (both modes)::

    stream = await transport.open_stream("/invoke/Svc/handler", headers)
    await stream.send(chunk)          # any number of times
    await stream.end_request()
    status, headers = await stream.response_head()
    while (chunk := await stream.receive()) is not None:
        ...
    stream.abort()                    # always safe; a no-op once the exchange finished

Every stream must end with either ``receive()`` returning ``None`` or ``abort()``;
otherwise it keeps its connection slot (HTTP/1.1) or stream slot (HTTP/2).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol
from urllib.parse import urlsplit

__all__ = [
    "ClientStream",
    "DeploymentAddress",
    "Response",
    "Transport",
    "TransportError",
    "join_headers",
    "open_transport",
    "parse_base_uri",
    "read_body",
]


class TransportError(Exception):
    """The exchange failed below the HTTP semantics: connect, I/O, protocol or stream reset.

    ``unprocessed`` is true when the peer guarantees the request was never handed to the
    application (connection never established, HTTP/2 REFUSED_STREAM, or a stream above
    the GOAWAY last-stream-id), so retrying it immediately cannot duplicate work.
    """

    def __init__(self, message: str, *, unprocessed: bool = False) -> None:
        super().__init__(message)
        self.unprocessed = unprocessed


@dataclass(slots=True)
class Response:
    """A complete response of a one-shot ``Transport.request``."""

    status: int
    headers: dict[str, str]
    body: bytes


class ClientStream(Protocol):
    """One request/response exchange. For HTTP/2 it is full duplex."""

    async def send(self, data: bytes) -> None:
        """Queue a request-body chunk."""
        ...

    def write(self, data: bytes) -> None:
        """Queue a request-body chunk from synchronous code: never waits, never raises.

        Unlike ``send()`` there is no back-pressure, and on a failed, finished or ended
        stream the chunk is silently dropped (the reading side reports the failure).
        """
        ...

    async def end_request(self) -> None:
        """No more request body (HTTP/1.1: this is when the request goes out)."""
        ...

    async def response_head(self) -> tuple[int, dict[str, str]]:
        """Status and lower-cased response headers."""
        ...

    async def receive(self) -> bytes | None:
        """Next response-body chunk, or None at the clean end of the response."""
        ...

    def abort(self) -> None:
        """Cancel the exchange. Idempotent, never raises."""
        ...


class Transport(abc.ABC):
    """A connection pool to one deployment; ``H2Transport`` and ``H1Transport`` implement it.

    Subclasses provide ``_open()`` (start an exchange) and ``aclose()``; the waiter queue
    for a free connection or stream slot and the one-shot ``request()`` are shared.
    """

    #: Set by each subclass: the ALPN protocol offered over TLS, and the default limit.
    alpn: ClassVar[str]
    max_connections: int

    def __init__(
        self,
        address: DeploymentAddress,
        *,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
        idle_timeout: float = 4.0,
    ) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        if max_connections is not None:
            self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._ssl: ssl.SSLContext | None = None
        if address.scheme == "https":
            self._ssl = ssl_context or client_ssl_context(self.alpn)
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False

    async def open_stream(self, path: str, headers: list[tuple[str, str]]) -> ClientStream:
        """Start a POST exchange on ``path`` (relative to the deployment's base path)."""
        return await self._open(b"POST", path, headers, end=False)

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        timeout: float = 30.0,
        max_body: int | None = None,
    ) -> Response:
        """A complete request/response, e.g. ``GET /discover``; a response body over
        ``max_body`` bytes raises ``ResponseTooLarge`` as soon as it is seen."""
        stream: ClientStream | None = None
        try:
            async with asyncio.timeout(timeout):
                if body:
                    headers = [*headers, ("content-length", str(len(body)))]
                stream = await self._open(method.upper().encode(), path, headers, end=not body)
                if body:
                    await stream.send(body)
                await stream.end_request()
                status, resp_headers = await stream.response_head()
                return Response(status, resp_headers, await read_body(stream, max_body))
        except TimeoutError:
            raise TransportError(
                f"{method} {self.address.path_for(path)} to {self.address.display} "
                f"timed out after {timeout}s"
            ) from None
        finally:
            if stream is not None:
                stream.abort()

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close every connection; open streams fail with TransportError."""

    @abc.abstractmethod
    def open_connections(self) -> int:
        """Connections open to the deployment now, busy or idle (for metrics)."""

    @abc.abstractmethod
    async def _open(
        self, method: bytes, path: str, headers: list[tuple[str, str]], *, end: bool
    ) -> ClientStream:
        """Start an exchange; ``end``: the request has no body (HTTP/2 sends END_STREAM
        with the headers)."""

    # -- for the subclasses' pools ----------------------------------------------------

    def _closed_error(self) -> TransportError:
        return TransportError(f"transport to {self.address.display} closed")

    async def _wait_for_capacity(self) -> None:
        """Queue until ``capacity_changed()`` wakes us (first come, first served)."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.capacity_changed()  # pass the wake-up on
            raise

    def capacity_changed(self, all_waiters: bool = False) -> None:
        """A connection or stream slot freed up (or the pool changed): wake waiting openers."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not all_waiters:
                    return


@dataclass(frozen=True, slots=True)
class DeploymentAddress:
    """Where a deployment lives, split once so the hot path only concatenates strings."""

    scheme: str  # "http" or "https"
    host: str  # without IPv6 brackets, as the socket layer wants it
    port: int
    authority: str  # host[:port] as in the URI, for Host / :authority
    base_path: str  # without trailing slash; "" for the root

    def path_for(self, path: str) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.base_path + path

    @property
    def display(self) -> str:
        """host:port for error messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_base_uri(base_uri: str) -> DeploymentAddress:
    try:
        parts = urlsplit(base_uri)
        port = parts.port
    except ValueError as exc:
        raise TransportError(f"invalid deployment uri {base_uri!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TransportError(f"unsupported scheme in deployment uri {base_uri!r}")
    host = parts.hostname
    if not host:
        raise TransportError(f"no host in deployment uri {base_uri!r}")
    if port is None:
        port = 443 if scheme == "https" else 80
    # netloc minus any userinfo keeps the original spelling (brackets, explicit port).
    authority = parts.netloc.rpartition("@")[2]
    return DeploymentAddress(
        scheme=scheme,
        host=host,
        port=port,
        authority=authority,
        base_path=parts.path.rstrip("/"),
    )


def join_headers(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Response header fields as text: names as latin-1 (h11 and h2 deliver them lower-case),
    values as UTF-8; repeated fields joined with ", " (RFC 9110 field combination).
    HTTP/2 pseudo-headers (":status") are not fields and are left out.
    """
    out: dict[str, str] = {}
    for name, value in pairs:
        if name[:1] == b":":
            continue
        key = name.decode("latin-1")
        text = value.decode("utf-8", "replace")
        prev = out.get(key)
        out[key] = text if prev is None else f"{prev}, {text}"
    return out


class ResponseTooLarge(TransportError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the response body is larger than the {limit} bytes accepted")
        self.limit = limit


async def read_body(stream: ClientStream, limit: int | None = None) -> bytes:
    """The rest of the response body, until ``receive()`` reports its end.

    More than ``limit`` bytes: ``ResponseTooLarge``, without reading the rest.
    """
    parts = []
    size = 0
    while (chunk := await stream.receive()) is not None:
        size += len(chunk)
        if limit is not None and size > limit:
            raise ResponseTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)


def describe_os_error(exc: BaseException) -> str:
    """A short cause for error messages ("connection refused", "timed out", ...)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


def client_ssl_context(alpn: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols([alpn])
    return ctx


def open_transport(
    base_uri: str,
    http_version: Literal["HTTP/2.0", "HTTP/1.1"],
    *,
    connect_timeout: float = 10.0,
    ssl_context: ssl.SSLContext | None = None,
) -> Transport:
    """Create a transport for one deployment. Connections are opened lazily.

    ``ssl_context`` only matters for ``https://`` deployments. By default the system
    trust store is used and ALPN offers the protocol of ``http_version``; a context you
    pass must offer ALPN "h2" itself for HTTP/2 (we do not mutate it).
    """
    if base_uri.startswith("asgi://"):
        from pyrestate.invoker.inprocess import AsgiTransport

        return AsgiTransport(base_uri, http_version)
    address = parse_base_uri(base_uri)
    if http_version == "HTTP/2.0":
        from pyrestate.invoker.http2 import H2Transport

        return H2Transport(address, connect_timeout=connect_timeout, ssl_context=ssl_context)
    if http_version == "HTTP/1.1":
        from pyrestate.invoker.http1 import H1Transport

        return H1Transport(address, connect_timeout=connect_timeout, ssl_context=ssl_context)
    raise ValueError(f"unsupported http_version {http_version!r}")
