"""Shared by test_http1.py and test_http2.py: test servers (hypercorn in this event loop,
or a raw asyncio one) and client exchanges against them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

import restate
from hypercorn.asyncio import serve
from hypercorn.config import Config

from pyrestate.invoker.transport import Transport, open_transport, read_body

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def echo_app(scope, receive, send) -> None:
    """/echo streams every request chunk straight back; /hello answers a one-shot."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    client_port = str(scope["client"][1]).encode()
    if scope["path"].endswith("/hello"):
        body = f"hello {scope['method']} {scope['path']} {scope['http_version']}".encode()
        headers = [(b"x-multi", b"a"), (b"x-multi", b"b"), (b"x-client-port", client_port)]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    # Headers go out before any body is read: clients can see the head immediately.
    headers = [(b"x-client-port", client_port), (b"x-path", scope["path"].encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        if message.get("body"):
            await send({"type": "http.response.body", "body": message["body"], "more_body": True})
        if not message.get("more_body"):
            break
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def hypercorn_config(fd: int, **config: object) -> Config:
    """Serve on the listening socket ``fd``, which hypercorn then owns (and closes)."""
    cfg = Config()
    cfg.bind = [f"fd://{fd}"]
    cfg.graceful_timeout = 0.2
    cfg.loglevel = "WARNING"
    for key, value in config.items():
        setattr(cfg, key, value)
    return cfg


@contextlib.asynccontextmanager
async def hypercorn_server(app, **config: object) -> AsyncIterator[str]:
    """Run hypercorn serving ``app`` on a fresh loopback port; yield its base URI."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    cfg = hypercorn_config(sock.detach(), **config)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, cfg, shutdown_trigger=stop.wait))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """Serve each connection with ``handler``, then drop it; yield the base URI."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away: expected in these tests
        finally:
            writer.transport.abort()

    srv = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    finally:
        srv.close()
        await srv.wait_closed()


def free_port() -> int:
    """A loopback port nobody listens on (connecting to it is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def exchange(
    transport: Transport, path: str, *chunks: bytes
) -> tuple[int, dict[str, str], bytes]:
    """POST ``chunks`` on one stream, yielding to other tasks between them so that
    concurrent exchanges interleave; the response status, headers and body."""
    stream = await transport.open_stream(path, [("content-type", "application/octet-stream")])
    for i, chunk in enumerate(chunks):
        if i:
            await asyncio.sleep(0)
        await stream.send(chunk)
    await stream.end_request()
    status, headers = await stream.response_head()
    return status, headers, await read_body(stream)


async def discover_sdk_app(
    http_version: Literal["HTTP/2.0", "HTTP/1.1"],
) -> tuple[dict[str, str], dict[str, Any]]:
    """Serve a one-service restate SDK app with hypercorn and discover it over
    ``http_version``; the response headers and the manifest."""
    greeter = restate.Service("Greeter")

    @greeter.handler()
    async def greet(ctx: restate.Context, name: str) -> str:
        return f"Hello {name}"

    async with (
        hypercorn_server(restate.app([greeter])) as uri,
        contextlib.aclosing(open_transport(uri, http_version)) as transport,
    ):
        response = await transport.request(
            "GET", "/discover", [("accept", "application/vnd.restate.endpointmanifest.v3+json")]
        )
    assert response.status == 200, response.body
    manifest = json.loads(response.body)
    assert [s["name"] for s in manifest["services"]] == ["Greeter"]
    return response.headers, manifest
