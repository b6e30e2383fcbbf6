"""The in-process transport: the invoker drives an SDK's ASGI app in this very process.

Same exchanges as over HTTP/2 (full duplex: frames flow both ways while the handler runs,
so suspension, retries and request identity behave the same), without sockets or HTTP
framing: request-body chunks go straight to the app's ``receive()``, what it ``send()``s
comes straight back. One task per exchange runs the app.

Deployments of this kind have URIs ``asgi://<module>/<attribute>``. An app is reachable
once mounted (``mount``: ``pyrestate run`` and ``pyrestate.testing`` do it); with
``allow_imports`` set, an unmounted URI names a module to import and its attribute.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, ClassVar

from pyrestate.invoker.transport import DeploymentAddress, Transport, TransportError

__all__ = ["SCHEME", "AsgiTransport", "app_uri", "mount", "mounted", "unmount"]

SCHEME = "asgi"
AsgiApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]
# Buffered but not yet taken by the other side: beyond this, the writer waits.
HIGH_WATER = 1024 * 1024

_apps: dict[str, AsgiApp] = {}
allow_imports = False  # the admin API may import modules named by asgi:// URIs
# The Python SDK's app takes SIGTERM over on its first request (it expects to own the
# process, under its own ASGI server); the server sets this to take it back right after.
reclaim_signals: Callable[[], None] | None = None
_called: set[int] = set()  # apps that had their first request


def app_uri(module: str, attribute: str = "app") -> str:
    return f"{SCHEME}://{module}/{attribute}"


def mount(uri: str, app: AsgiApp) -> None:
    """Make ``app`` the deployment reachable at ``uri`` (an ``asgi://`` URI)."""
    _split(uri)
    _apps[uri] = app


def unmount(uri: str) -> None:
    _apps.pop(uri, None)


def mounted(uri: str) -> bool:
    return uri in _apps


def _split(uri: str) -> tuple[str, str]:
    scheme, sep, rest = uri.partition("://")
    module, _, attribute = rest.partition("/")
    if scheme != SCHEME or not sep or not module or not attribute or "/" in attribute:
        raise TransportError(f"invalid in-process deployment uri {uri!r}: want asgi://module/app")
    return module, attribute


def _resolve(uri: str) -> AsgiApp:
    app = _apps.get(uri)
    if app is not None:
        return app
    module, attribute = _split(uri)
    if not allow_imports:
        raise TransportError(
            f"no in-process app is mounted at {uri}: run it with `pyrestate run "
            f"{module}:{attribute}`, or start the server with --asgi-import"
        )
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as e:
        raise TransportError(f"cannot load the in-process app {uri}: {e}") from None
    if not callable(found):
        raise TransportError(f"{module}.{attribute} is not an ASGI app")
    _apps[uri] = found
    return found


class AsgiStream:
    """One exchange with the app (implements ``ClientStream``)."""

    __slots__ = (
        "_aborted",
        "_chunks",
        "_ended",
        "_error",
        "_head",
        "_in_bytes",
        "_inbox",
        "_inbox_bytes",
        "_request_done",
        "_task",
        "_waiter",
    )

    def __init__(self, app: AsgiApp, scope: dict[str, Any], end: bool) -> None:
        self._inbox: collections.deque[dict[str, Any]] = collections.deque()
        self._inbox_bytes = 0
        self._request_done = end
        if end:
            self._inbox.append({"type": "http.request", "body": b"", "more_body": False})
        self._head: tuple[int, dict[str, str]] | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._in_bytes = 0
        self._ended = False
        self._aborted = False
        self._error: TransportError | None = None
        # One future at a time: whichever side waits for the other.
        self._waiter: asyncio.Future[None] | None = None
        self._task = asyncio.get_running_loop().create_task(self._run(app, scope))

    # -- the app's side

    async def _run(self, app: AsgiApp, scope: dict[str, Any]) -> None:
        try:
            await app(scope, self._app_receive, self._app_send)
        except asyncio.CancelledError:
            if not self._aborted:
                self._fail("the in-process app was cancelled")
            raise
        except Exception as e:
            self._fail(f"the in-process app failed: {type(e).__name__}: {e}")
            return
        if not self._ended:
            self._fail("the in-process app returned before completing its response")

    async def _app_receive(self) -> dict[str, Any]:
        while not self._inbox:
            if self._aborted or self._ended:
                return {"type": "http.disconnect"}
            await self._wait()
        event = self._inbox.popleft()
        self._inbox_bytes -= len(event.get("body", b""))
        self._wake()
        return event

    async def _app_send(self, message: MutableMapping[str, Any]) -> None:
        if self._aborted:
            return
        kind = message["type"]
        if kind == "http.response.start":
            headers = {
                k.decode("latin-1").lower(): v.decode("utf-8", "replace")
                for k, v in message.get("headers", ())
            }
            self._head = (int(message["status"]), headers)
        elif kind == "http.response.body":
            body = bytes(message.get("body", b""))
            if body:
                self._chunks.append(body)
                self._in_bytes += len(body)
            if not message.get("more_body", False):
                self._ended = True
        self._wake()
        while self._in_bytes > HIGH_WATER and not self._aborted:
            await self._wait()  # the invoker takes what it was sent first

    # -- the invoker's side (ClientStream)

    async def send(self, data: bytes) -> None:
        self.write(data)
        while self._inbox_bytes > HIGH_WATER and self._error is None and not self._aborted:
            await self._wait()
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> None:
        if self._request_done or self._aborted or self._error is not None or not data:
            return
        self._inbox.append({"type": "http.request", "body": bytes(data), "more_body": True})
        self._inbox_bytes += len(data)
        self._wake()

    async def end_request(self) -> None:
        if not self._request_done:
            self._request_done = True
            self._inbox.append({"type": "http.request", "body": b"", "more_body": False})
            self._wake()

    async def response_head(self) -> tuple[int, dict[str, str]]:
        while self._head is None:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._head

    async def receive(self) -> bytes | None:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended:
                return None
            await self._wait()
        chunk = self._chunks.popleft()
        self._in_bytes -= len(chunk)
        self._wake()
        return chunk

    def abort(self) -> None:
        if self._aborted:
            return
        self._aborted = True
        self._wake()
        # A finished response: the app hears the disconnect and returns by itself.
        if not self._ended and not self._task.done():
            self._task.cancel()

    # -- both

    def _fail(self, message: str) -> None:
        if self._error is None:
            self._error = TransportError(message)
        self._wake()

    async def _wait(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._waiter = None


class AsgiTransport(Transport):
    """Exchanges with one in-process app; no connections, so no limit but the app's."""

    alpn: ClassVar[str] = ""
    max_connections = 1

    def __init__(self, uri: str, http_version: str) -> None:
        module, attribute = _split(uri)
        super().__init__(DeploymentAddress(SCHEME, module, 0, f"{module}/{attribute}", ""))
        self._uri = uri
        # Over "HTTP/2" the SDK streams both ways; over "HTTP/1.1" it answers at the end.
        self._http_version = "1.1" if http_version == "HTTP/1.1" else "2"
        self._streams: set[AsgiStream] = set()

    async def _open(
        self, method: bytes, path: str, headers: list[tuple[str, str]], *, end: bool
    ) -> AsgiStream:
        if self._closed:
            raise self._closed_error()
        app = _resolve(self._uri)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self._http_version,
            "method": method.decode(),
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode()) for k, v in headers],
            "client": None,
            "server": None,
        }
        stream = AsgiStream(app, scope, end)
        if id(app) not in _called:
            _called.add(id(app))
            if reclaim_signals is not None:
                # After the app's first step, in which it installs its handler.
                asyncio.get_running_loop().call_soon(reclaim_signals)
        self._streams.add(stream)
        stream._task.add_done_callback(lambda _: self._streams.discard(stream))
        return stream

    async def aclose(self) -> None:
        self._closed = True
        for stream in list(self._streams):
            stream.abort()

    def open_connections(self) -> int:
        return 0  # calls go straight into the app
