"""Services for the idempotency tests: duplicate idempotent calls and sends, attach by
idempotency key, a short idempotency retention, idempotent calls and attach from inside a
handler, terminal errors with metadata through a chain of calls.

What really executed is counted in files (see durability.py), since Restate state would
only show what Restate stored.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import restate
from restate import Context, ObjectContext, TerminalError

from examples.durability import _record

idem = restate.Service("Idem")


@idem.handler()
async def slow(ctx: Context, req: dict) -> dict:
    """A ctx.run that takes req["millis"] and counts each real execution of it."""

    async def step() -> int:
        runs = _record(f"idem-{req['tag']}.runs", "run")
        await asyncio.sleep(req.get("millis", 0) / 1000)
        return runs

    runs = await ctx.run_typed("step", step)
    return {"tag": req["tag"], "runs": runs}


@idem.handler()
async def greet(ctx: Context, name: str) -> str:
    """Counts its executions; the answer names the input, so a replayed answer shows."""

    def step() -> int:
        return _record(f"greet-{name}.runs", "run")

    runs = await ctx.run_typed("step", step)
    return f"hello {name} #{runs}"


idem_obj = restate.VirtualObject("IdemObj")


@idem_obj.handler()
async def add(ctx: ObjectContext, n: int) -> int:
    """Adds n to the object's total; counts its executions per object key."""

    def step() -> int:
        return _record(f"obj-{ctx.key()}.runs", "run")

    await ctx.run_typed("step", step)
    total = (await ctx.get("total", type_hint=int) or 0) + n
    ctx.set("total", total)
    return total


short = restate.Service("ShortIdem", idempotency_retention=timedelta(seconds=2))


@short.handler()
async def count(ctx: Context, tag: str) -> int:
    """Kept for 2 s only: after that the same idempotency key executes again."""

    def step() -> int:
        return _record(f"short-{tag}.runs", "run")

    return await ctx.run_typed("step", step)


caller = restate.Service("IdemCaller")


@caller.handler(name="callTwice")
async def call_twice(ctx: Context, req: dict) -> list:
    """Calls Idem/greet twice with the same idempotency key: it must execute once."""
    first = await ctx.service_call(greet, arg=req["name"], idempotency_key=req["key"])
    second = await ctx.service_call(greet, arg=req["name"], idempotency_key=req["key"])
    return [first, second]


@caller.handler(name="attachTo")
async def attach_to(ctx: Context, invocation_id: str) -> dict:
    """Attaches to another invocation by id; reports its result or its terminal error."""
    try:
        result = await ctx.attach_invocation(invocation_id)
    except TerminalError as exc:
        return {"error": {"code": exc.status_code, "message": exc.message}}
    return {"result": result}


failer = restate.Service("Failer")


@failer.handler()
async def fail(ctx: Context, req: dict) -> str:
    """Fails terminally with the requested status code, message and metadata."""
    raise TerminalError(req["message"], status_code=req["code"], metadata=req.get("metadata"))


relay = restate.Service("Relay")


@relay.handler(name="callFail")
async def call_fail(ctx: Context, req: dict) -> str:
    """Calls Failer/fail and lets its terminal error propagate to the ingress."""
    return await ctx.service_call(fail, arg=req)


@relay.handler(name="catchFail")
async def catch_fail(ctx: Context, req: dict) -> dict:
    """Calls Failer/fail and reports the TerminalError it sees."""
    try:
        await ctx.service_call(fail, arg=req)
    except TerminalError as exc:
        return {"code": exc.status_code, "message": exc.message, "metadata": exc.metadata}
    return {}


app = restate.app(services=[idem, idem_obj, short, caller, failer, relay])
