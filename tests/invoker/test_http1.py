"""HTTP/1.1 request/response transport against real hypercorn and raw asyncio servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import pytest
from transport_helpers import discover_sdk_app, exchange, free_port, hypercorn_server, raw_server

from pyrestate.invoker.http1 import H1Transport
from pyrestate.invoker.transport import (
    ResponseTooLarge,
    TransportError,
    open_transport,
    parse_base_uri,
    read_body,
)

# -- test servers ---------------------------------------------------------------------


async def app(scope, receive, send) -> None:
    """/echo: chunked echo of the body; /fixed: content-length; /slow: never answers."""
    if scope["type"] != "http":
        return
    client_port = str(scope["client"][1]).encode()
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    headers = [(b"x-client-port", client_port), (b"x-path", path.encode())]
    if path.endswith("/slow"):
        await asyncio.sleep(10)
    if path.endswith("/fixed"):
        payload = f"{scope['method']} {path} {scope['http_version']} {len(body)}".encode()
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        return
    # No content-length: hypercorn answers with chunked transfer-encoding.
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for offset in range(0, len(body), 100_000):
        chunk = body[offset : offset + 100_000]
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async with hypercorn_server(app) as uri:
        yield uri


def h1(uri: str, **kwargs: object) -> H1Transport:
    return H1Transport(parse_base_uri(uri), **kwargs)  # type: ignore[arg-type]


# -- tests ----------------------------------------------------------------------------


async def test_chunked_and_content_length_responses(server: str) -> None:
    async with aclosing(open_transport(server, "HTTP/1.1")) as transport:
        status, headers, body = await exchange(transport, "/echo", b"hello ", b"world")
        assert status == 200
        assert headers["transfer-encoding"] == "chunked"
        assert body == b"hello world"
        stream = await transport.open_stream("/echo", [])
        stream.write(b"sync ")  # the non-waiting variant, for synchronous callers
        await stream.send(b"async")
        await stream.end_request()
        stream.write(b"dropped")  # after end_request: ignored, never raises
        assert (await stream.response_head())[0] == 200
        assert await read_body(stream) == b"sync async"
        status, headers, body = await exchange(transport, "/fixed", b"abc")
        assert status == 201
        assert body == b"POST /fixed 1.1 3"
        assert headers["content-length"] == str(len(body))


async def test_large_body_both_directions(server: str) -> None:
    payload = bytes(range(256)) * 20_000  # ~5 MB
    async with aclosing(open_transport(server, "HTTP/1.1")) as transport:
        _, _, body = await asyncio.wait_for(
            exchange(transport, "/echo", payload[:1000], payload), 10
        )
        assert body == payload[:1000] + payload


async def test_keep_alive_reuses_one_connection(server: str) -> None:
    async with aclosing(h1(server)) as transport:
        ports = set()
        for i in range(5):
            _, headers, body = await exchange(transport, "/echo", b"%d" % i)
            assert body == b"%d" % i
            ports.add(headers["x-client-port"])
        response = await transport.request("GET", "/fixed", [])
        ports.add(response.headers["x-client-port"])
        assert len(ports) == 1
        assert transport._count == 1


async def test_concurrent_requests_bounded_pool(server: str) -> None:
    async with aclosing(h1(server, max_connections=4)) as transport:
        ports: set[str] = set()

        async def one(i: int) -> None:
            _, headers, body = await exchange(transport, "/echo", b"req-%d" % i)
            assert body == b"req-%d" % i
            ports.add(headers["x-client-port"])

        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(100))), 10)
        assert 1 < len(ports) <= 4
        assert transport._count == len(transport._idle) <= 4


async def test_default_pool_opens_connections_for_concurrency(server: str) -> None:
    async with aclosing(open_transport(server, "HTTP/1.1")) as transport:
        results = await asyncio.gather(*(exchange(transport, "/echo", b"x") for _ in range(20)))
        assert len({headers["x-client-port"] for _, headers, _ in results}) > 1


async def test_one_shot_request_and_base_path() -> None:
    async with (
        hypercorn_server(app) as uri,
        aclosing(open_transport(uri + "/some/prefix/", "HTTP/1.1")) as transport,
    ):
        response = await transport.request("GET", "/fixed", [("accept", "text/plain")])
        assert response.status == 201
        assert response.body == b"GET /some/prefix/fixed 1.1 0"
        posted = await transport.request("POST", "echo", [], body=b"abc")
        assert posted.body == b"abc"
        assert posted.headers["x-path"] == "/some/prefix/echo"


async def test_request_timeout(server: str) -> None:
    async with aclosing(h1(server)) as transport:
        started = time.monotonic()
        with pytest.raises(TransportError, match=r"timed out after 0\.2s"):
            await transport.request("GET", "/slow", [], timeout=0.2)
        assert time.monotonic() - started < 2
        assert transport._count == 0  # the busy connection was closed, not leaked
        assert (await transport.request("GET", "/fixed", [])).status == 201


async def test_abort_closes_connection(server: str) -> None:
    async with aclosing(h1(server)) as transport:
        stream = await transport.open_stream("/slow", [])
        await stream.end_request()
        pending = asyncio.create_task(stream.response_head())
        await asyncio.sleep(0.05)
        stream.abort()
        stream.abort()  # idempotent
        with pytest.raises(TransportError, match="aborted"):
            await asyncio.wait_for(pending, 2)
        assert transport._count == 0


async def test_aclose_fails_in_flight_exchange(server: str) -> None:
    transport = h1(server)
    stream = await transport.open_stream("/slow", [])
    await stream.end_request()
    pending = asyncio.create_task(stream.response_head())
    await asyncio.sleep(0.05)
    await transport.aclose()
    with pytest.raises(TransportError, match=server.removeprefix("http://")):
        await asyncio.wait_for(pending, 2)
    assert transport._count == 0
    with pytest.raises(TransportError, match="closed"):
        await transport.request("GET", "/fixed", [])


async def test_connection_refused_is_fast() -> None:
    port = free_port()
    transport = open_transport(f"http://127.0.0.1:{port}", "HTTP/1.1")
    started = time.monotonic()
    stream = await transport.open_stream("/echo", [])
    await stream.send(b"x")
    with pytest.raises(TransportError, match=f"connection refused to 127.0.0.1:{port}") as info:
        await stream.end_request()
    assert info.value.unprocessed
    with pytest.raises(TransportError, match="connection refused"):
        await transport.request("GET", "/discover", [])
    assert time.monotonic() - started < 2
    await transport.aclose()


async def test_read_until_close_response() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart one, ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"part two")
        writer.close()

    async with raw_server(handler) as uri, aclosing(h1(uri)) as transport:
        response = await transport.request("GET", "/", [])
        assert response.body == b"part one, part two"
        assert transport._count == 0  # not reusable: closed


async def test_server_dies_mid_response() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()
        writer.transport.abort()

    async with raw_server(handler) as uri, aclosing(h1(uri)) as transport:
        stream = await transport.open_stream("/", [])
        await stream.end_request()
        assert (await stream.response_head())[0] == 200
        with pytest.raises(TransportError, match=uri.removeprefix("http://")):
            await asyncio.wait_for(read_body(stream), 2)
        assert transport._count == 0


async def test_stale_pooled_connection_is_retried_once() -> None:
    """The server drops a kept-alive connection instead of answering its 2nd request."""
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()

    async with raw_server(handler) as uri, aclosing(h1(uri)) as transport:
        assert (await transport.request("GET", "/", [])).body == b"ok"
        assert (await transport.request("GET", "/", [])).body == b"ok"
        assert connections == 2


async def test_idle_connection_closed_by_server_is_not_reused() -> None:
    async with (
        hypercorn_server(app, keep_alive_timeout=0.1) as uri,
        aclosing(h1(uri, idle_timeout=10)) as transport,
    ):
        first = await transport.request("GET", "/fixed", [])
        await asyncio.sleep(0.4)  # hypercorn closed the idle connection meanwhile
        second = await transport.request("GET", "/fixed", [])
        assert second.status == 201
        assert first.headers["x-client-port"] != second.headers["x-client-port"]


async def test_restate_sdk_discovery_reports_request_response() -> None:
    _, manifest = await discover_sdk_app("HTTP/1.1")
    assert manifest["protocolMode"] == "REQUEST_RESPONSE"


async def test_a_response_over_max_body_fails_before_it_is_read_whole(server: str) -> None:
    async with aclosing(open_transport(server, "HTTP/1.1")) as transport:
        payload = b"x" * 2_000_000  # echoed back in chunks of 100 kB
        with pytest.raises(ResponseTooLarge, match="250000 bytes"):
            await transport.request("POST", "/echo", [], payload, max_body=250_000)
        response = await transport.request("POST", "/echo", [], b"small", max_body=250_000)
        assert response.body == b"small"
