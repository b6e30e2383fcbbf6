"""Services that wait: durable timers, one-way messages, awakeables and calls between services.

Driven by tests/e2e/test_waiting.py. As in examples/durability.py, some events are
recorded in files (one line per event, under PYRESTATE_E2E_COUNT_DIR) rather than in
Restate state, because the tests must see what really executed, replays included, and
must learn awakeable ids while the invocation that created them is still waiting.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import timedelta
from pathlib import Path

import restate
from restate import Context, ObjectContext, ObjectSharedContext, TerminalError

COUNT_DIR_ENV = "PYRESTATE_E2E_COUNT_DIR"


def _count_dir() -> Path:
    directory = Path(os.environ.get(COUNT_DIR_ENV) or "/tmp/pyrestate-e2e-counts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _record(name: str, line: str) -> int:
    """Append `line` to the count file `name` and return how many lines it now has."""
    path = _count_dir() / name
    # One small O_APPEND write per event keeps lines whole even with concurrent writers.
    with open(path, "a") as f:
        f.write(line + "\n")
    with open(path) as f:
        return sum(1 for _ in f)


def _publish(name: str, value: str) -> str:
    """Write `value` to the file `name` atomically, so a reader never sees half of it."""
    path = _count_dir() / name
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(value)
    tmp.replace(path)
    return value


def _millis(n: int) -> timedelta:
    return timedelta(milliseconds=n)


# --- Durable timers


timers = restate.Service("Timers")


async def _noop() -> None:
    return None


def _woke(tag: str) -> float:
    _record(f"nap-{tag}.log", "woke")
    return time.time()


@timers.handler()
async def nap(ctx: Context, req: dict) -> dict:
    """Sleeps `millis` durably; `nap-<tag>.log` gets "armed" once the timer is stored
    and "woke" when the step after the sleep executes (once)."""
    tag: str = req["tag"]
    started = await ctx.time()
    sleep = ctx.sleep(_millis(req["millis"]))
    # A run's result reaches the handler only after the server committed it, and the
    # sleep command precedes it in the journal: past this run the timer is durable, and
    # a test may crash the server knowing the sleep must survive.
    await ctx.run_typed("armed", _noop)
    _record(f"nap-{tag}.log", "armed")
    await sleep
    # In a run: code outside runs re-executes on every replay (in request/response mode
    # each completed run ends the attempt), while a stored run result is never redone.
    woke = await ctx.run_typed("woke", _woke, tag=tag)
    return {"tag": tag, "started": started, "woke": woke}


# --- A mailbox per key: the target of one-way and delayed messages


mailbox = restate.VirtualObject("Mailbox")


@mailbox.handler()
async def deliver(ctx: ObjectContext, msg: str) -> list:
    """Appends `msg` with the wall-clock time it was delivered; returns all messages."""
    # Journaled, so a replay keeps the time of the first delivery.
    at = await ctx.time()
    inbox = await ctx.get("inbox", type_hint=list) or []
    inbox.append({"msg": msg, "at": at})
    ctx.set("inbox", inbox)
    return [m["msg"] for m in inbox]


@mailbox.handler()
async def hold(ctx: ObjectContext, millis: int) -> None:
    """Keeps the key's lock for `millis`, then leaves a "held" message."""

    async def pause() -> None:
        # asyncio.sleep, not time.sleep: other invocations share this event loop.
        await asyncio.sleep(millis / 1000)

    await ctx.run_typed("pause", pause)
    inbox = await ctx.get("inbox", type_hint=list) or []
    inbox.append({"msg": "held", "at": time.time()})
    ctx.set("inbox", inbox)


@mailbox.handler(kind="shared")
async def messages(ctx: ObjectSharedContext) -> list:
    return await ctx.get("inbox", type_hint=list) or []


sequencer = restate.VirtualObject("Sequencer")


@sequencer.handler()
async def append(ctx: ObjectContext, n: int) -> None:
    seen = await ctx.get("seen", type_hint=list) or []
    seen.append(n)
    ctx.set("seen", seen)


@sequencer.handler(kind="shared")
async def seen(ctx: ObjectSharedContext) -> list:
    return await ctx.get("seen", type_hint=list) or []


# --- Calls and one-way sends between services


caller = restate.Service("Caller")


@caller.handler()
async def square(ctx: Context, n: int) -> int:
    return n * n


@caller.handler(name="fanOut")
async def fan_out(ctx: Context, n: int) -> dict:
    """Calls `square` n times concurrently and gathers the results, in call order."""
    calls = [ctx.service_call(square, arg=i) for i in range(n)]
    await restate.gather(*calls)
    # Each call's id arrives as its own notification, before or after its result.
    ids = [await c.invocation_id() for c in calls]
    return {"results": [await c for c in calls], "ids": ids}


@caller.handler(name="callObject")
async def call_object(ctx: Context, req: dict) -> dict:
    """Calls Mailbox/<key>/deliver, which queues behind whatever holds that key."""
    call = ctx.object_call(deliver, key=req["key"], arg=req["msg"])
    return {"inbox": await call, "id": await call.invocation_id()}


@caller.handler(name="genericCall")
async def generic_call(ctx: Context, key: str) -> list:
    """Reads Mailbox/<key>/messages through the untyped call API (raw JSON bytes)."""
    raw = await ctx.generic_call("Mailbox", "messages", arg=b"", key=key)
    return [m["msg"] for m in json.loads(raw)]


@caller.handler(name="sendAll")
async def send_all(ctx: Context, req: dict) -> dict:
    """Fires one-way messages (one delayed) and returns their invocation ids at once."""
    key: str = req["key"]
    now = ctx.object_send(deliver, key=key, arg="now")
    later = ctx.object_send(deliver, key=key, arg="later", send_delay=_millis(req["delayMs"]))
    generic = ctx.generic_send("Mailbox", "deliver", arg=json.dumps("generic").encode(), key=key)
    svc = ctx.service_send(square, arg=7)
    sent_at = await ctx.time()
    return {
        "now": await now.invocation_id(),
        "later": await later.invocation_id(),
        "generic": await generic.invocation_id(),
        "square": await svc.invocation_id(),
        "sentAt": sent_at,
    }


# --- Awakeables: a payment waits for the provider's callback


payment = restate.Service("Payment")


@payment.handler()
async def pay(ctx: Context, req: dict) -> dict:
    """Creates an awakeable, publishes its id to `awakeable-<tag>.id`, optionally sleeps
    `delayMs` (so the callback can arrive before the await), then waits for it."""
    tag: str = req["tag"]
    awakeable_id, confirmation = ctx.awakeable()
    # In a run, so the id is handed out once even if the invocation is replayed.
    await ctx.run_typed("publish", _publish, name=f"awakeable-{tag}.id", value=awakeable_id)
    if req.get("delayMs"):
        await ctx.sleep(_millis(req["delayMs"]))
    # A rejection raises TerminalError here and, uncaught, fails the invocation with it.
    result = await confirmation
    _record(f"pay-{tag}.log", "resumed")
    return {"tag": tag, "confirmation": result}


@payment.handler()
async def confirm(ctx: Context, req: dict) -> None:
    ctx.resolve_awakeable(req["id"], req["value"])


@payment.handler()
async def decline(ctx: Context, req: dict) -> None:
    ctx.reject_awakeable(req["id"], req["reason"], failure_code=req.get("code", 500))


# --- A saga: compensations run in reverse when a later step fails for good


saga = restate.Service("Saga")


def _step(tag: str, step: str, fail: bool) -> str:
    _record(f"saga-{tag}.log", f"do {step}")
    if fail:
        raise TerminalError(f"{step} declined", status_code=402)
    return f"{step}-ok"


def _undo(tag: str, step: str) -> None:
    _record(f"saga-{tag}.log", f"undo {step}")


@saga.handler()
async def book(ctx: Context, req: dict) -> list:
    tag: str = req["tag"]
    steps: list[str] = req["steps"]
    compensations: list[str] = []
    try:
        for step in steps:
            await ctx.run_typed(
                f"do-{step}", _step, tag=tag, step=step, fail=step == req.get("failAt")
            )
            compensations.append(step)
    except TerminalError:
        for step in reversed(compensations):
            await ctx.run_typed(f"undo-{step}", _undo, tag=tag, step=step)
        raise
    return steps


# --- Racing an awakeable against a timer


race = restate.Service("Race")


@race.handler(name="signalOrTimeout")
async def signal_or_timeout(ctx: Context, req: dict) -> dict:
    """Waits for an awakeable or `timeoutMs`, whichever is first. With `resolveAfterMs`,
    a delayed one-way call to Payment/confirm resolves the awakeable that much later."""
    awakeable_id, signal = ctx.awakeable()
    if req.get("resolveAfterMs") is not None:
        ctx.service_send(
            confirm,
            arg={"id": awakeable_id, "value": "signalled"},
            send_delay=_millis(req["resolveAfterMs"]),
        )
    winner, value = await restate.select(
        signal=signal, timeout=ctx.sleep(_millis(req["timeoutMs"]))
    )
    return {"winner": winner, "value": value}


# --- Deterministic randomness across retries


dice = restate.Service("Dice")


@dice.handler()
async def roll(ctx: Context, tag: str) -> dict:
    """Draws, stores the draw in a run, then fails once; the retry must draw the same."""
    draw = ctx.random().random()
    token = str(ctx.uuid())

    def remember() -> list:
        return [draw, token]

    stored = await ctx.run_typed("remember", remember)
    # Outside the run on purpose: every attempt that gets here writes its own draw.
    attempt = _record(f"dice-{tag}.log", json.dumps([draw, token]))
    if attempt == 1:
        raise RuntimeError("transient failure after the run")
    return {"draw": draw, "token": token, "stored": stored}


app = restate.app(services=[timers, mailbox, sequencer, caller, payment, saga, race, dice])
