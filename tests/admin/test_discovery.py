"""Discovery: request shape, retries, and the official error texts."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from pyrestate.admin.discovery import ACCEPT, discover
from pyrestate.admin.errors import AdminError
from pyrestate.admin.model import SUPPORTED_PROTOCOL_VERSIONS
from pyrestate.invoker.transport import Response, TransportError

V4 = "application/vnd.restate.endpointmanifest.v4+json"
MANIFEST = {
    "protocolMode": "BIDI_STREAM",
    "minProtocolVersion": 5,
    "maxProtocolVersion": 7,
    "services": [{"name": "Greeter", "ty": "SERVICE", "handlers": [{"name": "greet"}]}],
}


def ok(manifest: Any = MANIFEST, ct: str | None = V4, **headers: str) -> Response:
    h = {} if ct is None else {"content-type": ct}
    h.update({k.replace("_", "-"): v for k, v in headers.items()})
    body = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return Response(200, h, body)


class FakeTransport:
    """Answers requests from a script: a Response or an exception per attempt."""

    def __init__(self, script: list[Response | Exception]) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, str, list[tuple[str, str]]]] = []
        self.closed = False

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        timeout: float = 30.0,
        max_body: int | None = None,
    ) -> Response:
        self.requests.append((method, path, headers))
        item = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(item, Exception):
            raise item
        return item

    async def aclose(self) -> None:
        self.closed = True


def factory(transport: FakeTransport, seen: list[tuple[str, str]]) -> Callable[..., Any]:
    def make(uri: str, http_version: str) -> FakeTransport:
        seen.append((uri, http_version))
        return transport

    return make


async def run(
    script: list[Response | Exception], **kwargs: Any
) -> tuple[Any, FakeTransport, list[tuple[str, str]]]:
    transport = FakeTransport(script)
    seen: list[tuple[str, str]] = []
    result: Any
    try:
        result = await discover(
            kwargs.pop("uri", "http://svc:9080"),
            transport_factory=factory(transport, seen),
            retry_delays=(0, 0, 0, 0),
            **kwargs,
        )
    except AdminError as e:
        result = e
    assert transport.closed
    return result, transport, seen


async def test_success_and_request_shape() -> None:
    result, transport, seen = await run(
        [ok(x_restate_server="restate-sdk-python/1.2.0")],
        additional_headers={"X-Token": "secret"},
    )
    assert seen == [("http://svc:9080", "HTTP/2.0")]
    assert transport.requests == [
        (
            "GET",
            "/discover",
            [("accept", ACCEPT), ("x-token", "secret"), ("x-restate-cluster-name", "localcluster")],
        )
    ]
    assert (
        ", ".join(f"application/vnd.restate.endpointmanifest.v{n}+json" for n in (1, 2, 3, 4))
        == ACCEPT
    )
    assert result.protocol_type == "BidiStream"
    assert result.http_version == "HTTP/2.0"
    assert (result.min_protocol_version, result.max_protocol_version) == (5, 7)
    assert result.sdk_version == "restate-sdk-python/1.2.0"
    assert [s["name"] for s in result.services] == ["Greeter"]


async def test_http11_and_request_response() -> None:
    manifest = dict(MANIFEST, protocolMode="REQUEST_RESPONSE")
    result, _, seen = await run(
        [ok(manifest, ct="application/vnd.restate.endpointmanifest.v2+json")], use_http_11=True
    )
    assert seen == [("http://svc:9080", "HTTP/1.1")]
    assert (result.protocol_type, result.http_version, result.sdk_version) == (
        "RequestResponse",
        "HTTP/1.1",
        None,
    )


@pytest.mark.parametrize(("status", "attempts"), [(500, 5), (503, 5), (429, 5), (401, 1), (404, 1)])
async def test_retries_only_transient_statuses(status: int, attempts: int) -> None:
    resp = Response(status, {"content-type": "text/plain", "server": "x"}, b"nope")
    result, transport, _ = await run([resp])
    assert isinstance(result, AdminError)
    assert (result.status, result.restate_code) == (500, "META0003")
    assert len(transport.requests) == attempts
    if status == 404:
        assert result.message == (
            "[META0003] [META0003] got status code '404'. Make sure the provided URI has the "
            "correct path where the Restate SDK endpoint is mounted. Response headers: "
            '{"content-type": "text/plain", "server": "x"}. Body: nope'
        )
    if status == 503:
        assert "got status code '503 Service Unavailable'. Response headers: " in result.message


async def test_transient_failure_then_success() -> None:
    refused = TransportError("connection refused to svc:9080 (HTTP/2)", unprocessed=True)
    result, transport, _ = await run([refused, Response(502, {}, b""), ok()])
    assert result.protocol_type == "BidiStream"
    assert len(transport.requests) == 3


@pytest.mark.parametrize(
    ("response", "message", "code"),
    [
        (
            ok(ct=None),
            "[META0013] [META0013] received a bad response from the SDK: No content type header "
            "was specified. Expected one of '\"" + ACCEPT + "\"' content type.",
            "META0013",
        ),
        (
            ok(ct="application/json"),
            "[META0013] [META0013] received a bad response from the SDK: Bad content type "
            'header: "application/json". Expected one of \'"' + ACCEPT + "\"'",
            "META0013",
        ),
        (
            ok({k: v for k, v in MANIFEST.items() if k != "protocolMode"}),
            "[META0013] [META0013] received a bad response from the SDK: missing protocol mode",
            "META0013",
        ),
        (
            ok(dict(MANIFEST, minProtocolVersion=1, maxProtocolVersion=4)),
            "[META0012] [META0012] unsupported service protocol versions: [1, 4]. Supported "
            "versions by this runtime are [5, 6]. Please upgrade the SDK and try registering "
            "again.",
            "META0012",
        ),
        (
            ok(dict(MANIFEST, minProtocolVersion=6, maxProtocolVersion=5)),
            "[META0013] [META0013] received a bad response from the SDK: Expected min protocol "
            "version to be <= max protocol version. Received min protocol version '6', max "
            "protocol version '5'",
            "META0013",
        ),
        (
            ok(b"{not json"),
            # The official quotes serde_json here; pyrestate quotes Python's decoder.
            "received a bad response from the SDK that cannot be decoded: Expecting property "
            "name enclosed in double quotes: line 1 column 2. Discovery response: {not json",
            None,
        ),
        (
            ok(x_restate_server="restate-sdk-typescript/1.1.3"),
            "[META0012] [META0012] unsupported service protocol versions: [5, 1]. Supported "
            "versions by this runtime are [5, 6]. Please upgrade the SDK and try registering "
            "again.",
            "META0012",
        ),
    ],
)
async def test_bad_answers(response: Response, message: str, code: str | None) -> None:
    result, transport, _ = await run([response])
    assert isinstance(result, AdminError)
    assert (result.status, result.restate_code) == (500, code)
    expected = message
    if "runtime are [5, 6]" in message:
        v = SUPPORTED_PROTOCOL_VERSIONS
        expected = message.replace("[5, 6]", f"[{v[0]}, {v[-1]}]")
    assert result.message == expected
    assert len(transport.requests) == 1  # a bad answer is not retried


# --- against real sockets


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_connection_refused_like_official() -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(AdminError) as e2:
        await discover(uri, retry_delays=(0.001,) * 4)
    assert (e2.value.status, e2.value.restate_code) == (500, "META0003")
    assert e2.value.message == (
        f"[META0003] [META0003] error when calling 'http://127.0.0.1:{port}/': h2 pool "
        "connection error: Connection refused (os error 111)"
    )
    with pytest.raises(AdminError) as e1:
        await discover(uri + "/", use_http_11=True, retry_delays=())
    assert e1.value.message == (
        f"[META0003] [META0003] error when calling 'http://127.0.0.1:{port}/': unable to reach "
        "the remote endpoint.\nReason: client error (Connect) caused by: tcp connect error "
        "caused by: Connection refused (os error 111)"
    )


@pytest.fixture
async def http1_only_server() -> AsyncIterator[int]:
    """Answers anything with an HTTP/1.0 error, like a server that knows no HTTP/2."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"HTTP/1.0 400 Bad request version\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_http1_only_server_suggests_http11(http1_only_server: int) -> None:
    uri = f"http://127.0.0.1:{http1_only_server}"
    with pytest.raises(AdminError) as e:
        await discover(uri, retry_delays=(0.001,) * 4)
    assert (e.value.status, e.value.restate_code) == (500, "META0014")
    assert e.value.message == (
        f"[META0014] [META0014] error when calling 'http://127.0.0.1:{http1_only_server}/': "
        "server possibly supports only HTTP1.1, consider discovery with --use-http1.1."
    )
