"""A misbehaving deployment must fail only its own invocation attempts, never the server.

The fake deployment is our own ASGI app, run in-process by hypercorn (so it serves both
HTTP/2 prior knowledge and HTTP/1.1). It answers discovery exactly like an SDK would by
passing it to a real SDK app (examples.counter + examples.demo), and answers invocations
of `Counter/add` with a chosen kind of nonsense until the test tells it to behave; then
those go to the real SDK app too, so the pending invocation can complete.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import restate
from harness import (
    Server,
    answer_lifespan,
    free_port,
    port_open,
    register,
    sql_rows,
    target,
    wait_until,
)
from hypercorn.asyncio import serve
from hypercorn.config import Config

from examples import counter, demo

# The server's own surface: the same with any SDK version or transport (run once).
pytestmark = pytest.mark.server_only

BAD_PATH = "/invoke/Counter/add"


def _frame(msg_type: int, payload: bytes, claimed_length: int | None = None) -> bytes:
    # Service protocol frame header: u16 type, u16 flags, u32 length, big-endian.
    length = len(payload) if claimed_length is None else claimed_length
    return (
        msg_type.to_bytes(2, "big") + (0).to_bytes(2, "big") + length.to_bytes(4, "big") + payload
    )


# mode -> (status, content type or None to echo the request's, body)
MISBEHAVIOURS: dict[str, tuple[int, str | None, bytes]] = {
    # Not frames at all.
    "garbage": (200, None, b"\xde\xad\xbe\xef this is not a restate frame \x00\xff" * 4),
    # A well-formed OutputCommand frame whose protobuf payload does not decode.
    "bad-protobuf": (200, None, _frame(0x0401, b"\x08\x96\x01junkjunk")),
    # A frame of a command type that does not exist.
    "unknown-command": (200, None, _frame(0x7A7A, b"\x08\x96\x01")),
    # A frame header promising 100 bytes, then the stream ends after 5.
    "truncated": (200, None, _frame(0x0401, b"\x0a\x03abc", claimed_length=100)),
    "wrong-content-type": (200, "text/html", b"<html><body>hello</body></html>"),
    "http-500": (500, "text/plain", b"internal error"),
}


class FakeDeployment:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.inner = restate.app(services=[counter.counter, demo.greeter])
        self.bad_attempts = 0
        self.requests: collections.Counter[str] = collections.Counter()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fake-deployment", daemon=True)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            # Answering keeps hypercorn from logging a lifespan error.
            await answer_lifespan(receive, send)
            return
        if scope["type"] == "http":
            with self._lock:
                self.requests[scope["path"]] += 1
                misbehave = scope["path"] == BAD_PATH and self.mode != "ok"
                if misbehave:
                    self.bad_attempts += 1
            if misbehave:
                await self._misbehave(scope, send)
                return
        await self.inner(scope, receive, send)

    async def _misbehave(self, scope: dict[str, Any], send: Any) -> None:
        status, content_type, body = MISBEHAVIOURS[self.mode]
        if content_type is None:
            # Echo the negotiated protocol content type so only the body is wrong.
            headers = dict(scope["headers"])
            content_type = headers.get(b"content-type", b"application/octet-stream").decode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    def behave(self) -> None:
        with self._lock:
            self.mode = "ok"

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            config = Config()
            config.bind = [f"127.0.0.1:{self.port}"]
            config.accesslog = None
            await serve(self, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]

        asyncio.run(main())

    def start(self) -> None:
        self._thread.start()
        wait_until(lambda: port_open(self.port), timeout=15, what="fake deployment listening")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


@pytest.fixture
def fake_factory() -> Iterator[Any]:
    fakes: list[FakeDeployment] = []

    def make(mode: str) -> FakeDeployment:
        fake = FakeDeployment(mode)
        fakes.append(fake)
        fake.start()
        return fake

    yield make
    for fake in fakes:
        fake.stop()


# The official server 1.7.12 does not survive a bad command inside a well-formed frame:
# an unknown command type panics its invoker ("not implemented") and an undecodable
# OutputCommand makes its partition processor fail ("failed to deserialize entry") in a
# loop, so that partition stops serving. pyrestate must do better (ARCHITECTURE.md,
# Errors), so these cases run only against pyrestate.
_ORACLE_CRASHES = pytest.mark.skipif(
    target() == "official", reason="official server 1.7.12 crashes its partition on this"
)
_ORACLE_CRASH_MODES = {"bad-protobuf", "unknown-command"}

CASES = [
    pytest.param(mode, False, id=f"http2-{mode}", marks=_ORACLE_CRASHES)
    if mode in _ORACLE_CRASH_MODES
    else pytest.param(mode, False, id=f"http2-{mode}")
    for mode in MISBEHAVIOURS
] + [
    pytest.param("garbage", True, id="http1-garbage"),
    pytest.param("truncated", True, id="http1-truncated"),
]


@pytest.mark.parametrize(("mode", "http1"), CASES)
def test_misbehaving_deployment_is_retried_and_server_survives(
    server: Server, http: httpx.Client, fake_factory: Any, mode: str, http1: bool
) -> None:
    fake = fake_factory(mode)
    reg = register(http, server.admin_url, fake.url, http1=http1)
    assert reg.status_code == 201, reg.text
    assert {s["name"] for s in reg.json()["services"]} == {"Counter", "Greeter"}

    sent = http.post(f"{server.ingress_url}/Counter/bad/add/send", json=1)
    assert sent.status_code == 202, sent.text
    inv = sent.json()["invocationId"]

    # Each bad answer fails the attempt and the server tries again.
    wait_until(lambda: fake.bad_attempts >= 3, timeout=30, what="3 failed attempts")
    # The recorded failure says what was wrong (an unknown command: which one).
    query = f"SELECT last_failure FROM sys_invocation WHERE id = '{inv}'"

    def failure() -> str | None:
        return next((r.get("last_failure") for r in sql_rows(http, server, query)), None)

    recorded = wait_until(failure, timeout=30, what="the failure recorded")
    if mode == "unknown-command":
        assert "0x7a7a" in recorded, recorded

    # Meanwhile the server still serves everything else, even on the same deployment.
    assert http.get(f"{server.admin_url}/health").status_code == 200
    greet = http.post(f"{server.ingress_url}/Greeter/greet", json="Ada")
    assert greet.status_code == 200, greet.text
    assert greet.json() == "Hello, Ada!"
    # A shared handler of the same object doesn't wait for the retrying exclusive call.
    read = http.get(f"{server.ingress_url}/Counter/bad/get")
    assert read.status_code == 200, read.text
    assert read.json() == 0
    assert server.running

    # Once the deployment behaves, the next retry completes the invocation, once.
    fake.behave()
    attached = http.get(f"{server.ingress_url}/restate/invocation/{inv}/attach", timeout=60)
    assert attached.status_code == 200, attached.text
    assert attached.json() == 1
    assert http.get(f"{server.ingress_url}/Counter/bad/get").json() == 1
    assert fake.requests[BAD_PATH] >= 4
