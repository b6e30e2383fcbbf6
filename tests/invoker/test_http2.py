"""HTTP/2 (h2c prior knowledge) transport against real hypercorn servers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import pytest
from transport_helpers import (
    discover_sdk_app,
    echo_app,
    exchange,
    free_port,
    hypercorn_server,
    raw_server,
)

from pyrestate.invoker.http2 import STREAM_WINDOW, H2Transport
from pyrestate.invoker.transport import TransportError, open_transport, parse_base_uri, read_body

# -- test servers ---------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async with hypercorn_server(echo_app) as uri:
        yield uri


def h2_transport(uri: str, **kwargs: object) -> H2Transport:
    return H2Transport(parse_base_uri(uri), **kwargs)  # type: ignore[arg-type]


# -- tests ----------------------------------------------------------------------------


async def test_full_duplex_echo(server: str) -> None:
    async with aclosing(open_transport(server, "HTTP/2.0")) as transport:
        stream = await transport.open_stream("/echo", [("content-type", "application/x")])
        # The head arrives before we send any body: hypercorn flushes it at response start.
        status, headers = await asyncio.wait_for(stream.response_head(), 2)
        assert status == 200
        assert headers["x-path"] == "/echo"
        for chunk in (b"first", b"second", b"third"):
            await stream.send(chunk)
            assert await asyncio.wait_for(stream.receive(), 2) == chunk
        stream.write(b"sync")  # the non-waiting variant, for synchronous callers
        assert await asyncio.wait_for(stream.receive(), 2) == b"sync"
        await stream.end_request()
        assert await asyncio.wait_for(stream.receive(), 2) is None
        assert await stream.receive() is None  # stays at the end
        stream.abort()  # a no-op once complete
        stream.write(b"dropped")  # never raises


async def test_many_concurrent_streams_share_one_connection() -> None:
    async with (
        hypercorn_server(echo_app, h2_max_concurrent_streams=1000) as uri,
        aclosing(h2_transport(uri)) as transport,
    ):
        ports: set[str] = set()

        async def one(i: int) -> None:
            # exchange() yields between the chunks: the streams interleave.
            _, headers, body = await exchange(transport, "/echo", b"%d-" % i, b"payload")
            ports.add(headers["x-client-port"])
            assert body == b"%d-payload" % i

        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(200))), 10)
        assert len(ports) == 1
        assert len(transport._conns) == 1
        assert not transport._conns[0].streams  # every slot released


async def test_peer_stream_limit_queues_on_one_connection(server: str) -> None:
    """hypercorn allows 100 concurrent streams; exceeding that would kill the connection."""
    async with aclosing(h2_transport(server, max_connections=1)) as transport:
        ports: set[str] = set()

        async def one(i: int) -> None:
            _, headers, body = await exchange(transport, "/echo", b"%d" % i)
            ports.add(headers["x-client-port"])
            assert body == b"%d" % i

        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(250))), 10)
        assert len(ports) == 1


async def test_peer_stream_limit_overflows_to_more_connections(server: str) -> None:
    async with aclosing(h2_transport(server)) as transport:
        ports: set[str] = set()
        opened = 0
        all_open = asyncio.Event()

        async def one(i: int) -> None:
            nonlocal opened
            stream = await transport.open_stream("/echo", [])
            _, headers = await stream.response_head()
            ports.add(headers["x-client-port"])
            opened += 1
            if opened == 250:
                all_open.set()
            await all_open.wait()  # all 250 streams are open at the same time
            await stream.send(b"x")
            await stream.end_request()
            assert await read_body(stream) == b"x"

        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(250))), 10)
        assert len(ports) == 3  # 100 + 100 + 50


async def test_large_bodies_both_directions(server: str) -> None:
    payload = os.urandom(256 * 1024) * 24  # 6 MiB: many windows' worth both ways
    async with aclosing(open_transport(server, "HTTP/2.0")) as transport:
        stream = await transport.open_stream("/echo", [])

        async def writer() -> None:
            view = memoryview(payload)
            for offset in range(0, len(payload), 100_000):
                await stream.send(bytes(view[offset : offset + 100_000]))
            await stream.end_request()

        write_task = asyncio.create_task(writer())
        received = await asyncio.wait_for(read_body(stream), 10)
        await write_task
        assert len(received) == len(payload)
        assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def test_unread_response_data_backpressures_the_deployment() -> None:
    """Data is acknowledged only when receive() hands it out: buffering stays bounded."""
    total = 3 * STREAM_WINDOW

    async def firehose(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"z" * 65536
        for _ in range(total // len(chunk)):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with hypercorn_server(firehose) as uri, aclosing(h2_transport(uri)) as transport:
        stream = await transport.open_stream("/", [])
        await stream.end_request()
        await asyncio.sleep(0.3)  # the deployment sends as fast as we let it
        assert 0 < stream._in_bytes <= STREAM_WINDOW
        assert len(await asyncio.wait_for(read_body(stream), 10)) == total


async def test_send_buffers_without_blocking_while_peer_window_is_closed(server: str) -> None:
    """Small sends return at once even when the reader is not consuming the echo."""
    async with aclosing(open_transport(server, "HTTP/2.0")) as transport:
        stream = await transport.open_stream("/echo", [])
        for _ in range(200):
            await asyncio.wait_for(stream.send(b"y" * 1000), 1)
        await stream.end_request()
        assert await asyncio.wait_for(read_body(stream), 5) == b"y" * 200_000


async def test_one_shot_request_and_base_path() -> None:
    async with (
        hypercorn_server(echo_app) as uri,
        aclosing(open_transport(uri + "/some/prefix/", "HTTP/2.0")) as transport,
    ):
        response = await transport.request("GET", "/hello", [("accept", "text/plain")])
        assert response.status == 200
        assert response.body == b"hello GET /some/prefix/hello 2"
        assert response.headers["x-multi"] == "a, b"
        posted = await transport.request("POST", "echo", [], body=b"abc")
        assert posted.status == 200
        assert posted.body == b"abc"
        assert posted.headers["x-path"] == "/some/prefix/echo"


async def test_abort_resets_stream_and_keeps_connection(server: str) -> None:
    async with aclosing(h2_transport(server)) as transport:
        stream = await transport.open_stream("/echo", [])
        await stream.send(b"a")
        assert await stream.receive() == b"a"
        stream.abort()
        stream.abort()  # idempotent
        with pytest.raises(TransportError, match="aborted"):
            await stream.receive()
        # The connection survives and carries the next stream.
        response = await transport.request("GET", "/hello", [])
        assert response.status == 200
        assert len(transport._conns) == 1
        assert not transport._conns[0].streams


async def test_connection_refused_is_fast() -> None:
    port = free_port()
    transport = open_transport(f"http://127.0.0.1:{port}/", "HTTP/2.0")
    started = time.monotonic()
    with pytest.raises(TransportError, match=f"connection refused to 127.0.0.1:{port}") as info:
        await transport.open_stream("/echo", [])
    assert info.value.unprocessed
    with pytest.raises(TransportError, match="connection refused"):
        await transport.request("GET", "/discover", [])
    assert time.monotonic() - started < 2
    await transport.aclose()


async def test_connect_timeout() -> None:
    # Nobody accepts on this listener and its backlog is full: the SYN is dropped (or,
    # if the kernel still completes it, the peer's SETTINGS never come), so only our
    # connect timeout ends the attempt.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        try:
            for _ in range(8):
                filler = socket.socket()
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect(("127.0.0.1", port))
                fillers.append(filler)
            transport = open_transport(f"http://127.0.0.1:{port}", "HTTP/2.0", connect_timeout=0.3)
            started = time.monotonic()
            # (Kernels set to reset on backlog overflow refuse instead: also fine.)
            cause = "(timed out|connection refused|connection reset)"
            with pytest.raises(TransportError, match=f"{cause} to 127.0.0.1:{port}"):
                await transport.open_stream("/echo", [])
            assert time.monotonic() - started < 3
            await transport.aclose()
        finally:
            for filler in fillers:
                filler.close()


async def test_http1_only_peer_fails_cleanly() -> None:
    """A peer that does not speak h2c answers the preface with HTTP/1.1 garbage."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async with (
        raw_server(handle) as uri,
        aclosing(open_transport(uri, "HTTP/2.0", connect_timeout=2)) as transport,
    ):
        with pytest.raises(TransportError, match=uri.removeprefix("http://")):
            await asyncio.wait_for(transport.open_stream("/echo", []), 3)


# Run from this directory (on the child's sys.path as the current one).
_SUBPROCESS_SERVER = """
import asyncio, sys
from hypercorn.asyncio import serve
from transport_helpers import echo_app, hypercorn_config
asyncio.run(serve(echo_app, hypercorn_config(int(sys.argv[1]))))
"""


async def test_server_killed_mid_stream_fails_streams_then_reconnect_fails_fast() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SUBPROCESS_SERVER, str(sock.fileno())],
        pass_fds=[sock.fileno()],
        cwd=Path(__file__).parent,
    )
    sock.close()  # the child holds the listener now
    transport = open_transport(f"http://127.0.0.1:{port}", "HTTP/2.0")
    try:
        streams = [await transport.open_stream("/echo", []) for _ in range(3)]
        for stream in streams:
            await stream.send(b"ping")
            assert await asyncio.wait_for(stream.receive(), 10) == b"ping"
        proc.send_signal(signal.SIGKILL)
        for stream in streams:
            with pytest.raises(TransportError, match=f"127.0.0.1:{port} lost"):
                await asyncio.wait_for(stream.receive(), 5)
            with pytest.raises(TransportError):
                await stream.send(b"more")
            stream.write(b"more")  # dropped silently
            stream.abort()  # never raises, even on a dead connection
        with pytest.raises(TransportError, match="connection refused"):
            await asyncio.wait_for(transport.open_stream("/echo", []), 5)
    finally:
        proc.kill()
        proc.wait()
        await transport.aclose()


async def test_aclose_fails_open_streams(server: str) -> None:
    transport = open_transport(server, "HTTP/2.0")
    stream = await transport.open_stream("/echo", [])
    await stream.send(b"x")
    assert await stream.receive() == b"x"
    pending = asyncio.create_task(stream.receive())
    await asyncio.sleep(0.01)
    await transport.aclose()
    with pytest.raises(TransportError, match="closed"):
        await asyncio.wait_for(pending, 2)
    with pytest.raises(TransportError, match="closed"):
        await transport.open_stream("/echo", [])


async def test_connection_retired_after_max_streams(server: str) -> None:
    """Rotating connections keeps us clear of hypercorn's keep_alive_max_requests."""
    async with aclosing(h2_transport(server, max_streams_per_connection=4)) as transport:
        ports = set()
        for _ in range(10):
            response = await transport.request("GET", "/hello", [])
            ports.add(response.headers["x-client-port"])
        assert len(ports) == 3
        assert len(transport._conns) == 1  # retired connections were closed


async def test_idle_connection_replaced_before_server_closes_it() -> None:
    async with (
        hypercorn_server(echo_app, keep_alive_timeout=0.3) as uri,
        aclosing(h2_transport(uri, idle_timeout=0.15)) as transport,
    ):
        first = await transport.request("GET", "/hello", [])
        await asyncio.sleep(0.2)  # past our idle timeout, before hypercorn's
        second = await transport.request("GET", "/hello", [])
        assert first.headers["x-client-port"] != second.headers["x-client-port"]
        await asyncio.sleep(0.5)  # past hypercorn's: it closed the connection
        third = await transport.request("GET", "/hello", [])
        assert third.status == 200


async def test_response_completed_before_request_end_is_not_an_error() -> None:
    """The deployment may finish its response while our request body is still open."""

    async def early_app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    async with hypercorn_server(early_app) as uri, aclosing(h2_transport(uri)) as transport:
        stream = await transport.open_stream("/x", [])
        await stream.send(b"a")
        assert await read_body(stream) == b"done"
        # Dropped, not sent: DATA on a stream whose app finished makes hypercorn
        # drop the whole connection.
        await stream.send(b"late")
        await stream.end_request()
        response = await transport.request("GET", "/x", [])
        assert response.body == b"done"
        assert len(transport._conns) == 1


async def test_trailers_are_exposed() -> None:
    async def trailers_app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"x"})
        await send({"type": "http.response.trailers", "headers": [(b"x-status", b"ok")]})

    async with hypercorn_server(trailers_app) as uri, aclosing(h2_transport(uri)) as transport:
        stream = await transport.open_stream("/", [("te", "trailers")])
        await stream.end_request()
        assert await read_body(stream) == b"x"
        assert stream.trailers == {"x-status": "ok"}


@contextlib.asynccontextmanager
async def raw_h2_server(on_request) -> AsyncIterator[tuple[str, list[object]]]:
    """A bare h2 server whose behaviour per request is scripted by ``on_request``."""
    events: list[object] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        conn.ping(b"12345678")
        writer.write(conn.data_to_send())
        with contextlib.suppress(h2.exceptions.ProtocolError):
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    events.append(event)
                    if isinstance(event, h2.events.RequestReceived):
                        on_request(conn, event.stream_id, dict(event.headers)[b":path"])
                writer.write(conn.data_to_send())

    async with raw_server(handle) as uri:
        yield uri, events


async def test_resets_goaway_and_ping_from_peer() -> None:
    def on_request(conn: h2.connection.H2Connection, stream_id: int, path: bytes) -> None:
        if path == b"/refuse":
            conn.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif path == b"/partial":
            conn.send_headers(stream_id, [(b":status", b"200")])
            conn.send_data(stream_id, b"partial")
            conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif path == b"/hang":
            conn.send_headers(stream_id, [(b":status", b"200")])
        elif path == b"/goaway":
            conn.send_headers(stream_id, [(b":status", b"200")])
            conn.close_connection(last_stream_id=stream_id - 2)

    async with (
        raw_h2_server(on_request) as (uri, events),
        aclosing(h2_transport(uri)) as transport,
    ):
        refused = await transport.open_stream("/refuse", [])
        with pytest.raises(TransportError, match="REFUSED_STREAM") as info:
            await asyncio.wait_for(refused.response_head(), 2)
        assert info.value.unprocessed

        partial = await transport.open_stream("/partial", [])
        assert (await asyncio.wait_for(partial.response_head(), 2))[0] == 200
        assert await partial.receive() == b"partial"  # data before the reset survives
        with pytest.raises(TransportError, match="INTERNAL_ERROR") as info:
            await partial.receive()
        assert not info.value.unprocessed

        # The peer's PING was acknowledged (h2 does it for us).
        assert any(isinstance(e, h2.events.PingAckReceived) for e in events)
        assert len(transport._conns) == 1  # stream errors leave the connection alone

        processed = await transport.open_stream("/hang", [])
        await asyncio.wait_for(processed.response_head(), 2)
        goaway = await transport.open_stream("/goaway", [])
        with pytest.raises(TransportError, match="GOAWAY NO_ERROR") as info:
            await asyncio.wait_for(goaway.receive(), 2)
        assert info.value.unprocessed  # above the last-stream-id: never processed
        # h2 cannot keep using a connection after GOAWAY: processed streams fail too,
        # but without the unprocessed mark.
        with pytest.raises(TransportError, match="GOAWAY") as info:
            await processed.receive()
        assert not info.value.unprocessed
        assert not transport._conns  # the next stream gets a new connection
        again = await transport.open_stream("/hang", [])
        assert (await asyncio.wait_for(again.response_head(), 2))[0] == 200


async def test_restate_sdk_discovery_reports_bidi_stream() -> None:
    headers, manifest = await discover_sdk_app("HTTP/2.0")
    assert "endpointmanifest.v3" in headers["content-type"]
    assert manifest["protocolMode"] == "BIDI_STREAM"


def test_base_uri_parsing() -> None:
    address = parse_base_uri("http://h:1/prefix/")
    assert (address.host, address.port, address.authority) == ("h", 1, "h:1")
    assert address.path_for("/discover") == "/prefix/discover"
    assert address.path_for("discover") == "/prefix/discover"
    root = parse_base_uri("http://[::1]:9080")
    assert root.host == "::1"
    assert root.authority == "[::1]:9080"
    assert root.display == "[::1]:9080"
    assert root.path_for("/invoke/S/h") == "/invoke/S/h"
    assert parse_base_uri("http://example.com").port == 80
    assert parse_base_uri("https://example.com/").port == 443
    with pytest.raises(TransportError):
        parse_base_uri("ftp://example.com")
    with pytest.raises(ValueError):
        open_transport("http://h:1", "HTTP/3")  # type: ignore[arg-type]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
async def test_https_with_alpn(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    async with hypercorn_server(echo_app, certfile=str(cert), keyfile=str(key)) as uri:
        uri = uri.replace("http://", "https://")
        for version, expected in (("HTTP/2.0", "2"), ("HTTP/1.1", "1.1")):
            ctx = ssl.create_default_context(cafile=str(cert))
            ctx.set_alpn_protocols(["h2" if version == "HTTP/2.0" else "http/1.1"])
            transport = open_transport(uri, version, ssl_context=ctx)  # type: ignore[arg-type]
            async with aclosing(transport):
                response = await transport.request("GET", "/hello", [])
                assert response.body.endswith(expected.encode())
        # Without trusting the certificate the handshake fails with a clear error.
        transport = open_transport(uri, "HTTP/2.0")
        with pytest.raises(TransportError, match=r"TLS error: CERTIFICATE_VERIFY_FAILED"):
            await transport.request("GET", "/hello", [])
        await transport.aclose()


async def test_per_request_header_values_are_sent_plainly_and_never_indexed() -> None:
    """Values new on every stream go without Huffman coding (cheaper for both sides) and
    as never-indexed literals (they would only evict the repeated headers from the
    peer's table); the repeated headers are still indexed."""
    received = bytearray()
    headers: list[list[tuple[bytes, bytes]]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while data := await reader.read(65536):
            received.extend(data)
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    headers.append(event.headers)
                    conn.send_headers(event.stream_id, [(":status", "200")], end_stream=True)
            writer.write(conn.data_to_send())

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with raw_server(handle) as uri, aclosing(h2_transport(uri)) as transport:
        for n in range(2):
            sent = [
                ("content-type", "application/vnd.restate.invocation.v5"),
                ("x-restate-invocation-id", f"inv_1fJ5RqZd1JxB3wCmYa3MqN4h0lV5XY0Z{n:02d}"),
                ("traceparent", parent),
            ]
            stream = await transport.open_stream("/invoke/Greeter/greet", sent)
            await stream.end_request()
            assert await read_body(stream) == b""
    assert len(headers) == 2
    for block in headers:
        kinds = {bytes(name): type(pair).__name__ for pair in block for name in pair[:1]}
        assert kinds[b"x-restate-invocation-id"] == "NeverIndexedHeaderTuple"
        assert kinds[b"traceparent"] == "NeverIndexedHeaderTuple"
        assert kinds[b"content-type"] == "HeaderTuple"
    assert received.count(parent.encode()) == 2, "the value as it is, not Huffman-coded"
    # The second request's content-type came from the table: one copy of it on the wire.
    assert received.count(b"application/vnd.restate.invocation.v5") == 1
