"""Services for the lifecycle tests: crashes while waiting, backing off or paused; timeouts;
retention; a caller waiting on a slow callee; a deployment that answers in one version.

What really executed is counted in files (see durability.py), since Restate state would
only show what Restate stored.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from typing import Any

import restate
from restate import Context, InvocationRetryPolicy

from examples.durability import _record

# Which version this process serves (the pinned-deployment test starts two).
VERSION = os.environ.get("PYRESTATE_E2E_VERSION", "v1")

slow = restate.Service("Slow")


@slow.handler()
async def work(ctx: Context, req: dict) -> str:
    """A ctx.run that takes req["millis"]; its marker file shows each real execution."""

    async def step() -> str:
        _record(f"slow-{req['tag']}.log", "start")
        await asyncio.sleep(req["millis"] / 1000)
        return f"worked {req['tag']}"

    return await ctx.run_typed("step", step)


waiter = restate.Service("Waiter")


@waiter.handler(name="callSlow")
async def call_slow(ctx: Context, req: dict) -> str:
    """Waits for Slow/work: a crash while the callee runs must not lose the answer."""
    result = await ctx.service_call(work, arg=req)
    return f"caller got: {result}"


backoff = restate.Service(
    "Backoff",
    invocation_retry_policy=InvocationRetryPolicy(
        initial_interval=timedelta(seconds=3), max_interval=timedelta(seconds=3)
    ),
)


@backoff.handler(name="failOnce")
async def fail_once(ctx: Context, tag: str) -> int:
    """Fails its first attempt, then waits 3 s backing off before the second succeeds."""
    attempt = _record(f"backoff-{tag}.attempts", "attempt")
    if attempt == 1:
        raise RuntimeError("first attempt fails")
    return attempt


pauser = restate.Service(
    "Pauser",
    invocation_retry_policy=InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=50), max_attempts=2, on_max_attempts="pause"
    ),
)


@pauser.handler(name="alwaysFails")
async def always_fails(ctx: Context, tag: str) -> None:
    """Paused after 2 attempts; a paused invocation must stay paused across a restart."""
    _record(f"pauser-{tag}.attempts", "attempt")
    raise RuntimeError("always fails")


stalled = restate.Service(
    "Stalled",
    inactivity_timeout=timedelta(milliseconds=500),
    abort_timeout=timedelta(milliseconds=500),
)


@stalled.handler()
async def stall(ctx: Context, tag: str) -> int:
    """The first attempt hangs in a ctx.run far beyond the abort timeout; the server must
    abort it and retry, and the second attempt finishes at once."""

    async def step() -> int:
        attempt = _record(f"stalled-{tag}.attempts", "attempt")
        if attempt == 1:
            await asyncio.sleep(30)
        return attempt

    return await ctx.run_typed("step", step)


brief = restate.Service(
    "Brief",
    journal_retention=timedelta(seconds=1),
    idempotency_retention=timedelta(seconds=1),
)


@brief.handler()
async def hello(ctx: Context, name: str) -> str:
    return f"hello {name}"


pinned = restate.Service("Pinned")


@pinned.handler()
async def which(ctx: Context, millis: int) -> str:
    """Sleeps durably, then says which version ran it: an invocation started on one
    deployment must finish there after another one is registered for the service."""
    await ctx.sleep(timedelta(milliseconds=millis))
    return VERSION


app = restate.app(services=[slow, waiter, backoff, pauser, stalled, brief, pinned])


async def v5_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The same services, advertising service protocol 5 at most: a V5 deployment.

    Each invocation's content type is recorded, so a test sees which version was used.
    """
    if scope["type"] != "http" or not scope["path"].endswith("/discover"):
        if scope["type"] == "http" and scope["path"].startswith("/invoke/"):
            ctype = dict(scope["headers"]).get(b"content-type", b"").decode()
            _record("v5-app.content-types", ctype)
        await app(scope, receive, send)
        return
    head: dict[str, Any] = {}
    body = bytearray()

    async def rewrite(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            head.update(message)
            return
        body.extend(message.get("body", b""))
        if message.get("more_body"):
            return
        doc = json.loads(body)
        doc["maxProtocolVersion"] = 5
        data = json.dumps(doc).encode()
        headers = [(k, v) for k, v in head["headers"] if k.lower() != b"content-length"]
        await send({**head, "headers": [*headers, (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})

    await app(scope, receive, rewrite)
