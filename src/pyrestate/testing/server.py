"""An embedded pyrestate for tests: the server and the services in the test's process.

The server runs on an event loop of its own, in a background thread; the services' ASGI
apps run on that loop through the in-process transport, and the methods here are plain
blocking calls, usable from any test (sync or async). Nothing listens on a port.

Time is virtual: it starts at the real time and ``advance()`` moves it ahead at once, so
durable sleeps, delayed sends and retry back-offs fire without waiting. ``crash()``
drops the server as a kill would (what was not committed is lost) and ``restart()``
recovers it from its data directory, with the services still in place.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from pyrestate import __version__
from pyrestate.config import Settings
from pyrestate.invoker import inprocess
from pyrestate.partition.processor import now_ms
from pyrestate.query.engine import QueryEngine
from pyrestate.query.literal import sql_literal
from pyrestate.query.routes import registry_snapshot
from pyrestate.query.tables import PartitionSource
from pyrestate.server import Server

T = TypeVar("T")
_apps = itertools.count(1)
# How long a blocking call waits for the embedded server before giving up.
DEFAULT_TIMEOUT_S = 60.0


class InvocationError(Exception):
    """A request to the ingress or admin API failed: the status and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class VirtualClock:
    """Epoch ms: the real time plus how far tests moved it ahead."""

    def __init__(self) -> None:
        self.ahead_ms = 0

    def __call__(self) -> int:
        return now_ms() + self.ahead_ms


class RestateTestServer:
    """Services in ``apps`` (``restate.app(...)`` objects) on an embedded server.

    Use it as a context manager, or call ``start()`` and ``stop()``. ``data_dir``: where
    the partition lives (a temporary directory by default, removed at ``stop()``).
    """

    def __init__(
        self,
        *apps: Any,
        data_dir: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._apps = apps
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="pyrestate-test-")
            data_dir = Path(self._tmp.name)
        self.data_dir = data_dir
        self.timeout = timeout
        self.clock = VirtualClock()
        self._uris = [inprocess.app_uri("pyrestate.testing", f"app{next(_apps)}") for _ in apps]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._ingress: httpx.AsyncClient | None = None
        self._admin: httpx.AsyncClient | None = None
        self._engine: QueryEngine | None = None
        # The engine's SQLite connections belong to the thread that opened them.
        self._query_thread: ThreadPoolExecutor | None = None

    # --- lifecycle

    def __enter__(self) -> RestateTestServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the loop thread and the server, and register the apps."""
        if self._loop is not None:
            return
        for uri, app in zip(self._uris, self._apps, strict=True):
            inprocess.mount(uri, app)
        loop = self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=loop.run_forever, name="pyrestate-test-server", daemon=True
        )
        self._thread.start()
        self._run(self._boot(register=True))

    def stop(self) -> None:
        """Stop the server cleanly and end the loop thread."""
        loop = self._loop
        if loop is None:
            return
        try:
            self._run(self._shutdown(clean=True))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            assert self._thread is not None
            self._thread.join(self.timeout)
            loop.close()
            self._loop = None
            for uri in self._uris:
                inprocess.unmount(uri)
            if self._tmp is not None:
                self._tmp.cleanup()

    def crash(self) -> None:
        """Drop the server as SIGKILL would: running handlers stop, nothing more commits."""
        self._run(self._shutdown(clean=False))

    def restart(self) -> None:
        """Start the server again from its data directory (after ``crash()`` or not)."""
        if self._server is not None:
            self._run(self._shutdown(clean=True))
        self._run(self._boot(register=False))

    async def _boot(self, register: bool) -> None:
        settings = Settings(data_dir=self.data_dir, sqlite_synchronous="NORMAL")
        server = Server(settings, clock=self.clock)
        await server.start(listen=False)
        self._server = server
        self._ingress = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=server.ingress),  # type: ignore[arg-type]
            base_url="http://ingress",
            timeout=None,
        )
        self._admin = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=server.admin),  # type: ignore[arg-type]
            base_url="http://admin",
            timeout=None,
        )
        self._engine = QueryEngine([PartitionSource(server.store.path)], __version__)
        self._query_thread = ThreadPoolExecutor(1, thread_name_prefix="pyrestate-test-query")
        if register:
            for uri in self._uris:
                await server.register_in_process(uri)

    async def _shutdown(self, clean: bool) -> None:
        server, self._server = self._server, None
        for client in (self._ingress, self._admin):
            if client is not None:
                await client.aclose()
        self._ingress = self._admin = None
        engine, pool = self._engine, self._query_thread
        self._engine = self._query_thread = None
        if engine is not None and pool is not None:
            for source in engine.sources:
                await asyncio.get_running_loop().run_in_executor(pool, source.close)
            pool.shutdown()
        if server is None:
            return
        if clean:
            await server.stop()
            return
        # A crash: the writer stops between two commits, the handlers where they are.
        await server.invoker.aclose()
        await server.partition.stop()
        server.store.close()

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the test server is not running: call start() first")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(self.timeout if timeout is None else timeout)

    def _running(self) -> Server:
        if self._server is None:
            raise RuntimeError("the test server is down: call restart()")
        return self._server

    # --- the ingress

    def call(
        self,
        service: str,
        handler: str,
        arg: Any = None,
        *,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Call a handler and wait for its result (JSON-decoded)."""
        resp = self._ingress_request(
            "POST", _path(service, key, handler), arg, idempotency_key, headers
        )
        return _result(resp)

    def send(
        self,
        service: str,
        handler: str,
        arg: Any = None,
        *,
        key: str | None = None,
        delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> str:
        """Start a handler without waiting; its invocation id."""
        path = _path(service, key, handler) + "/send"
        if delay is not None:
            path += f"?delay={int(delay.total_seconds() * 1000)}ms"
        resp = self._ingress_request("POST", path, arg, idempotency_key, headers)
        return str(_result(resp)["invocationId"])

    def attach(self, invocation_id: str) -> Any:
        """Wait for an invocation's result."""
        resp = self._ingress_request("GET", f"/restate/invocation/{invocation_id}/attach")
        return _result(resp)

    def resolve_awakeable(self, awakeable_id: str, value: Any = None) -> None:
        path = f"/restate/awakeables/{quote(awakeable_id, safe='')}/resolve"
        _result(self._ingress_request("POST", path, value))

    def reject_awakeable(self, awakeable_id: str, reason: str) -> None:
        path = f"/restate/awakeables/{quote(awakeable_id, safe='')}/reject"
        resp = self._run(self._ingress_client().post(path, content=reason.encode()))
        _result(resp)

    def _ingress_client(self) -> httpx.AsyncClient:
        self._running()
        assert self._ingress is not None
        return self._ingress

    def _ingress_request(
        self,
        method: str,
        path: str,
        arg: Any = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if idempotency_key is not None:
            sent["idempotency-key"] = idempotency_key
        content = None
        if arg is not None:
            content = json.dumps(arg).encode()
            sent.setdefault("content-type", "application/json")
        client = self._ingress_client()
        return self._run(client.request(method, path, content=content, headers=sent))

    # --- introspection and operations

    def admin(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """A request to the admin API, e.g. ``admin("PATCH", f"/invocations/{id}/cancel")``."""
        self._running()
        assert self._admin is not None
        return self._run(self._admin.request(method, path, json=body))

    def sql(self, query: str) -> list[dict[str, Any]]:
        """Rows of an introspection query, as ``POST /query`` gives them."""
        server = self._running()
        engine = self._engine
        assert engine is not None
        registry = registry_snapshot(server.registry.current, __version__)
        pool = self._query_thread
        assert pool is not None
        answer = self._run(_off_loop(pool, engine.run, query, registry, True))
        doc = json.loads(answer.body)
        if answer.status != 200:
            raise InvocationError(answer.status, doc.get("message", ""))
        return list(doc["rows"])

    def state(self, service: str, key: str) -> dict[str, Any]:
        """An object's state: each value JSON-decoded (or as bytes when it is not JSON)."""
        rows = self.sql(
            "SELECT key, value FROM state "
            f"WHERE service_name = {sql_literal(service)} AND service_key = {sql_literal(key)}"
        )
        return {row["key"]: _decoded(bytes.fromhex(row["value"])) for row in rows}

    def invocations(
        self, *, service: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Invocations (``sys_invocation`` rows), newest first, optionally filtered."""
        where = []
        if service is not None:
            where.append(f"target_service_name = {sql_literal(service)}")
        if status is not None:
            where.append(f"status = {sql_literal(status)}")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        return self.sql(f"SELECT * FROM sys_invocation{clause} ORDER BY created_at DESC")

    def journal(self, invocation_id: str) -> list[dict[str, Any]]:
        """An invocation's journal (``sys_journal`` rows: index, entry_type, name, ...)."""
        return self.sql(
            f"SELECT * FROM sys_journal WHERE id = {sql_literal(invocation_id)} ORDER BY index"
        )

    # --- time

    def now(self) -> datetime:
        """The server's (virtual) time."""
        return datetime.fromtimestamp(self.clock() / 1000, UTC)

    def advance(self, delta: timedelta) -> None:
        """Move time ahead by ``delta``; returns once every timer due by then has fired
        (sleeps completed, delayed sends started, back-offs over) and been committed."""
        if delta < timedelta(0):
            raise ValueError("time only moves forward")
        server = self._running()
        self.clock.ahead_ms += int(delta.total_seconds() * 1000)
        self._run(_settle(server))


async def _settle(server: Server) -> None:
    server.partition.time_moved()
    while not server.partition.timers_settled():
        await asyncio.sleep(0.002)


async def _off_loop(pool: ThreadPoolExecutor, fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


def _path(service: str, key: str | None, handler: str) -> str:
    parts: Sequence[str] = (service, key, handler) if key is not None else (service, handler)
    return "/" + "/".join(quote(p, safe="") for p in parts)


def _decoded(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _result(resp: httpx.Response) -> Any:
    if resp.status_code >= 300:
        try:
            message = resp.json().get("message", resp.text)
        except ValueError:
            message = resp.text
        raise InvocationError(resp.status_code, message)
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return resp.content


def wait_for(
    condition: Callable[[], object], timeout: float = DEFAULT_TIMEOUT_S, interval: float = 0.01
) -> None:
    """Poll ``condition()`` until it is true, e.g. until a handler reached its sleep."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)
