"""The HTTP front doors against hostile clients: slow heads, huge heads, too many requests.

A real uvicorn server from `start_front_door` listens on a free loopback port in the
test's event loop; clients are raw sockets, so the test controls every byte and pause.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pyrestate.admin.app import overloaded as admin_overloaded
from pyrestate.http_front import FrontLimits, InFlightLimit, start_front_door
from pyrestate.ingress.app import overloaded as ingress_overloaded

LIMITS = FrontLimits(max_in_flight=1, header_timeout_s=0.3, max_head_bytes=16 * 1024)


class App:
    """Answers 200 with the body size; ``/block`` waits until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.blocked = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        if scope["path"] == "/block":
            self.blocked.set()
            await self.release.wait()
        body = str(size).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def front() -> AsyncIterator[tuple[App, int]]:
    app = App()
    server = await start_front_door(
        app, "127.0.0.1:0", overloaded=ingress_overloaded, limits=LIMITS
    )
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield app, port
    finally:
        app.release.set()
        server.should_exit = True
        await server.shutdown()


async def exchange(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """Send ``data``, then read until the server closes or stops talking."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), timeout)
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(4096), seconds) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def request(path: str = "/", headers: bytes = b"", body: bytes = b"") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n".encode()
    return head + headers + b"\r\n" + body


async def test_a_normal_request_passes(front: tuple[App, int]) -> None:
    _, port = front
    answer = await exchange(port, request(body=b"abc"))
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n3")


async def test_a_client_that_trickles_its_head_is_disconnected(front: tuple[App, int]) -> None:
    _, port = front
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n")
    closed = False
    for i in range(40):  # 2 s of one header line every 50 ms; the limit is 0.3 s
        try:
            writer.write(f"x-slow-{i}: a\r\n".encode())
            await writer.drain()
        except ConnectionError:
            closed = True
            break
        if await closed_within(reader, 0.05):
            closed = True
            break
    writer.close()
    assert closed


async def test_a_silent_connection_is_disconnected(front: tuple[App, int]) -> None:
    _, port = front
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await closed_within(reader, 1.5)
    writer.close()


async def test_keep_alive_pauses_are_not_head_timeouts(front: tuple[App, int]) -> None:
    _, port = front
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):
        writer.write(request(body=b"ab"))
        answer = await asyncio.wait_for(reader.read(4096), 2)
        assert answer.startswith(b"HTTP/1.1 200")
        await asyncio.sleep(0.5)  # idle, longer than the head timeout
    writer.close()


async def test_a_huge_header_is_a_431(front: tuple[App, int]) -> None:
    _, port = front
    answer = await exchange(port, request(headers=b"x-big: " + b"a" * (1 << 20) + b"\r\n"))
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")


async def test_a_head_that_never_ends_is_a_431(front: tuple[App, int]) -> None:
    _, port = front
    answer = await exchange(port, b"GET / HTTP/1.1\r\nx-big: " + b"a" * (1 << 20))
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431")


async def test_more_than_100_headers_is_a_431(front: tuple[App, int]) -> None:
    _, port = front
    many = b"".join(b"x-h%d: 1\r\n" % i for i in range(98))  # + host, content-length
    assert (await exchange(port, request(headers=many))).startswith(b"HTTP/1.1 200")
    answer = await exchange(port, request(headers=many + b"x-one-more: 1\r\n"))
    assert answer.startswith(b"HTTP/1.1 431")


async def test_a_big_body_behind_a_small_head_is_not_refused(front: tuple[App, int]) -> None:
    _, port = front
    answer = await exchange(port, request(body=b"a" * 300_000))
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"300000")


async def test_over_the_in_flight_limit_is_a_503(front: tuple[App, int]) -> None:
    app, port = front
    first = asyncio.create_task(exchange(port, request("/block"), timeout=5))
    await asyncio.wait_for(app.blocked.wait(), 2)
    answer = await exchange(port, request())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503")
    assert b"\r\nretry-after: 1" in head
    assert json.loads(body) == {
        "code": 503,
        "message": "too many requests in flight, retry later",
        "source": "ingress",
    }
    app.release.set()
    assert (await first).startswith(b"HTTP/1.1 200")
    assert (await exchange(port, request())).startswith(b"HTTP/1.1 200")


async def test_the_admin_door_answers_overload_in_its_own_format() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def never(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("over the limit, the app must not run")

    limited = InFlightLimit(never, 0, admin_overloaded)
    await limited({"type": "http"}, None, send)
    assert sent[0]["status"] == 503
    assert (b"retry-after", b"1") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["restate_code"] is None


async def test_a_request_with_one_pipelined_behind_it_sees_the_disconnect() -> None:
    # uvicorn told only the latest request; the running one wrote to a closed socket.
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        while (await receive())["type"] != "http.disconnect":
            pass
        seen.append(scope["path"])

    server = await start_front_door(app, "127.0.0.1:0", overloaded=ingress_overloaded)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("/first") + request("/second"))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        assert seen == ["/first"]
    finally:
        server.should_exit = True
        await server.shutdown()
