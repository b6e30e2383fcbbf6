"""The in-process transport: exchanges with an ASGI app in this process, no sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from pyrestate.invoker import inprocess
from pyrestate.invoker.inprocess import HIGH_WATER, AsgiTransport
from pyrestate.invoker.transport import TransportError, open_transport

URI = inprocess.app_uri("tests.invoker", "echo")
scopes: list[dict[str, Any]] = []


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Answers at once, then echoes each request chunk as it arrives (a bidi stream)."""
    scopes.append(scope)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            return
        if event.get("body"):
            await send({"type": "http.response.body", "body": event["body"], "more_body": True})
        if not event.get("more_body", False):
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return


async def broken(scope: Any, receive: Any, send: Any) -> None:
    raise RuntimeError("no answer today")


async def flood(scope: Any, receive: Any, send: Any) -> None:
    """Sends far more than the high-water mark, recording how far it got."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for i in range(64):
        await send({"type": "http.response.body", "body": bytes(65536), "more_body": True})
        flood_progress.append(i)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


flood_progress: list[int] = []


@pytest.fixture(autouse=True)
def mounted() -> Iterator[None]:
    scopes.clear()
    flood_progress.clear()
    inprocess.mount(URI, echo)
    yield
    inprocess.unmount(URI)


async def test_chunks_flow_both_ways_before_the_request_ends() -> None:
    transport = open_transport(URI, "HTTP/2.0")
    assert isinstance(transport, AsgiTransport)
    stream = await transport.open_stream("/invoke/Svc/h", [("Content-Type", "x")])
    assert await stream.response_head() == (200, {"x-a": "1"})
    await stream.send(b"one")
    assert await stream.receive() == b"one"  # echoed while the request is still open
    stream.write(b"two")
    assert await stream.receive() == b"two"
    await stream.end_request()
    assert await stream.receive() is None
    stream.abort()
    (scope,) = scopes
    assert (scope["http_version"], scope["method"], scope["path"]) == ("2", "POST", "/invoke/Svc/h")
    assert scope["headers"] == [(b"content-type", b"x")]
    await transport.aclose()


async def test_http_1_1_and_one_shot_requests() -> None:
    transport = open_transport(URI, "HTTP/1.1")
    resp = await transport.request("GET", "/discover", [])
    assert (resp.status, resp.body) == (200, b"")
    assert scopes[0]["http_version"] == "1.1"
    await transport.aclose()


async def test_an_app_that_fails_is_a_transport_error() -> None:
    inprocess.mount(URI, broken)
    transport = open_transport(URI, "HTTP/2.0")
    stream = await transport.open_stream("/invoke/Svc/h", [])
    with pytest.raises(TransportError, match="no answer today"):
        await stream.response_head()
    await transport.aclose()


async def test_an_unknown_app_names_how_to_provide_it() -> None:
    transport = open_transport(inprocess.app_uri("nowhere", "app"), "HTTP/2.0")
    with pytest.raises(TransportError, match="pyrestate run nowhere:app"):
        await transport.open_stream("/invoke/Svc/h", [])
    with pytest.raises(TransportError, match="asgi://module/app"):
        open_transport("asgi://only-a-module", "HTTP/2.0")


async def test_a_slow_reader_holds_the_app_back() -> None:
    inprocess.mount(URI, flood)
    transport = open_transport(URI, "HTTP/2.0")
    stream = await transport.open_stream("/invoke/Svc/h", [])
    await stream.end_request()
    await stream.response_head()
    for _ in range(50):
        await asyncio.sleep(0)
    # Nothing read yet: the app waits once about HIGH_WATER bytes are buffered.
    assert len(flood_progress) * 65536 <= HIGH_WATER + 65536
    total = 0
    while (chunk := await stream.receive()) is not None:
        total += len(chunk)
    assert total == 64 * 65536 and len(flood_progress) == 64
    await transport.aclose()


async def test_abort_stops_an_app_mid_response() -> None:
    transport = open_transport(URI, "HTTP/2.0")
    stream = await transport.open_stream("/invoke/Svc/h", [])
    await stream.response_head()
    stream.abort()
    await asyncio.sleep(0.01)
    assert not transport._streams  # the app's task ended
    await transport.aclose()
