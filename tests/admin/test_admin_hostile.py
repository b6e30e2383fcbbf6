"""The admin API and discovery against hostile callers and hostile deployments."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from pyrestate.admin.app import AdminApp
from pyrestate.admin.discovery import EXCERPT_CHARS, discover
from pyrestate.admin.errors import AdminError
from pyrestate.admin.registry import Registry
from pyrestate.admin.web import MAX_BODY
from pyrestate.invoker.transport import Response, ResponseTooLarge, TransportError

V4 = "application/vnd.restate.endpointmanifest.v4+json"


class Holder:
    def __init__(self) -> None:
        self.current = Registry()


async def never_discover(uri: str, **kwargs: Any) -> Any:
    raise AssertionError(f"a refused body reached discovery: {uri!r}")


@pytest.fixture
async def admin() -> AsyncIterator[httpx.AsyncClient]:
    async def save(registry: Registry) -> None:
        raise AssertionError("nothing may be registered")

    app = AdminApp(Holder(), save=save, discover=never_discover)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://a") as client:
        yield client


# --- request bodies: every refusal is a 4xx with a message, never a 500

JSON = {"content-type": "application/json"}
BAD_BODIES: list[tuple[str, bytes, dict[str, str], int]] = [
    ("malformed", b"{", JSON, 400),
    ("empty", b"", JSON, 400),
    ("not utf-8", b'{"uri": "\xff"}', JSON, 400),
    ("lone surrogate", b'{"uri": "\\ud800"}', JSON, 400),
    ("NaN", b'{"uri": NaN}', JSON, 400),
    ("huge integer", b'{"uri": ' + b"1" * 5000 + b"}", JSON, 400),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, JSON, 400),
    ("trailing", b'{"uri": "http://x"} x', JSON, 400),
    ("array", b"[]", JSON, 422),
    ("string", b'"http://x"', JSON, 422),
    ("number", b"1e400", JSON, 422),
    ("null", b"null", JSON, 422),
    ("uri not a string", b'{"uri": 5}', JSON, 422),
    ("uri invalid", b'{"uri": "http://a b"}', JSON, 422),
    ("uri relative", b'{"uri": "/x"}', JSON, 400),
    ("headers not a map", b'{"uri": "http://x", "additional_headers": [1]}', JSON, 422),
    ("header value", b'{"uri": "http://x", "additional_headers": {"a": "\\n"}}', JSON, 422),
    ("metadata value", b'{"uri": "http://x", "metadata": {"a": 1}}', JSON, 422),
    ("flag not a bool", b'{"uri": "http://x", "force": "yes"}', JSON, 422),
    ("no content type", b'{"uri": "http://x"}', {}, 415),
    ("wrong content type", b'{"uri": "http://x"}', {"content-type": "text/plain"}, 415),
    ("too large", b" " * (MAX_BODY + 1), JSON, 413),
]


@pytest.mark.parametrize("prefix", ["", "/v2", "/v4"])
@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
async def test_bad_registration_bodies_are_4xx(
    admin: httpx.AsyncClient, prefix: str, body: bytes, headers: dict[str, str], status: int
) -> None:
    r = await admin.post(f"{prefix}/deployments", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.text and "Internal server error" not in r.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/deployments"),
        ("GET", "/deployments/dp_11111111111111111111111"),
        ("DELETE", "/deployments/dp_11111111111111111111111?force=true"),
        ("GET", "/services/S"),
        ("PUT", "/deployments/dp_11111111111111111111111"),
        ("PATCH", "/services/S"),
    ],
)
async def test_bodies_sent_where_none_is_expected_never_fail(
    admin: httpx.AsyncClient, method: str, path: str
) -> None:
    for body in (b"{", b"\xff" * 1000, b"[" * 100_000):
        r = await admin.request(method, path, content=body, headers=JSON)
        assert r.status_code < 500, r.text
    r = await admin.request(method, path, content=b" " * (MAX_BODY + 1), headers=JSON)
    # Refused by size where the route exists; a 405 never reads the body at all.
    assert r.status_code in (405, 413)


# --- manifest numbers


class ScriptedTransport:
    """Answers every request with one Response, or hangs for ``hang`` seconds."""

    def __init__(self, response: Response | None = None, hang: float = 0.0) -> None:
        self.response = response
        self.hang = hang
        self.attempts = 0

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes = b"",
        timeout: float = 30.0,
        max_body: int | None = None,
    ) -> Response:
        self.attempts += 1
        if self.response is None:
            await asyncio.sleep(self.hang)
            raise TransportError(f"GET /discover timed out after {timeout}s")
        if max_body is not None and len(self.response.body) > max_body:
            raise ResponseTooLarge(max_body)  # as read_body does, tested with the transports
        return self.response

    async def aclose(self) -> None:
        pass


def scripted(transport: ScriptedTransport) -> Callable[..., ScriptedTransport]:
    return lambda uri, version: transport


def manifest_with(handler_fields: str) -> bytes:
    return (
        '{"minProtocolVersion": 5, "maxProtocolVersion": 6, "protocolMode": "BIDI_STREAM", '
        '"services": [{"name": "S", "ty": "SERVICE", "handlers": [{"name": "h", '
        + handler_fields
        + "}]}]}"
    ).encode()


async def discover_manifest(body: bytes) -> Any:
    transport = ScriptedTransport(Response(200, {"content-type": V4}, body))
    return await discover("http://d", transport_factory=scripted(transport), retry_delays=())


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ('"journalRetention": 18446744073709551615', "journalRetention"),
        ('"idempotencyRetention": 9223372036854775808', "idempotencyRetention"),
        ('"inactivityTimeout": 3153600000001', "inactivityTimeout"),
        ('"abortTimeout": 4000000000000', "abortTimeout"),
        ('"workflowCompletionRetention": 10000000000000', "workflowCompletionRetention"),
        ('"retryPolicyMaxInterval": 99999999999999999', "retryPolicyMaxInterval"),
        ('"retryPolicyMaxAttempts": 9223372036854775808', "retryPolicyMaxAttempts"),
        ('"retryPolicyExponentiationFactor": 1e400', "retryPolicyExponentiationFactor"),
        ('"retryPolicyExponentiationFactor": 1' + "0" * 400, "retryPolicyExponentiationFactor"),
    ],
)
async def test_manifest_numbers_out_of_range_are_refused(fields: str, expected: str) -> None:
    with pytest.raises(AdminError) as info:
        await discover_manifest(manifest_with(fields))
    # Like every other manifest the decoder refuses (see fixtures/scenario.json).
    assert info.value.status == 500 and info.value.restate_code is None
    assert "cannot be decoded" in info.value.message
    assert f"$.services[0].handlers[0].{expected}" in info.value.message


async def test_manifest_durations_of_a_century_are_fine() -> None:
    found = await discover_manifest(
        manifest_with('"journalRetention": 3153600000000, "retryPolicyExponentiationFactor": 2.5')
    )
    assert [s["name"] for s in found.services] == ["S"]


# --- what discovery reads and repeats


async def test_a_response_over_the_size_limit_is_refused_without_echo() -> None:
    body = manifest_with('"documentation": "' + "d" * 2000 + '"')
    transport = ScriptedTransport(Response(200, {"content-type": V4}, body))
    with pytest.raises(AdminError) as info:
        await discover(
            "http://d", transport_factory=scripted(transport), retry_delays=(), max_body=1000
        )
    assert "larger than the 1000 bytes accepted" in info.value.message
    assert "ddd" not in info.value.message


@pytest.mark.parametrize("status", [200, 400])
async def test_errors_quote_only_an_excerpt_of_the_answer(status: int) -> None:
    junk = b"x" * 100_000
    transport = ScriptedTransport(Response(status, {"content-type": V4}, junk))
    with pytest.raises(AdminError) as info:
        await discover("http://d", transport_factory=scripted(transport), retry_delays=())
    assert "x" * EXCERPT_CHARS in info.value.message
    assert "x" * (EXCERPT_CHARS + 1) not in info.value.message
    assert "100000 bytes in all" in info.value.message
    assert len(info.value.message) < 2 * EXCERPT_CHARS


async def test_a_deployment_that_never_answers_fails_within_the_timeout() -> None:
    transport = ScriptedTransport(hang=60)
    started = time.monotonic()
    with pytest.raises(AdminError) as info:
        await discover("http://d", transport_factory=scripted(transport), timeout=0.3)
    assert time.monotonic() - started < 1.0
    assert "within 0.3s" in info.value.message and info.value.restate_code == "META0003"


async def test_a_trickling_deployment_fails_within_the_timeout() -> None:
    # A real server that sends its head, then one body byte every 50 ms, for ever.
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: " + V4.encode())
        writer.write(b"\r\ntransfer-encoding: chunked\r\n\r\n")
        try:
            while True:
                writer.write(b"1\r\n \r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass

    server = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        with pytest.raises(AdminError) as info:
            await discover(f"http://127.0.0.1:{port}", use_http_11=True, timeout=0.3)
    finally:
        server.close()
    assert time.monotonic() - started < 1.0
    assert json.dumps(info.value.body())  # an ordinary admin error
