"""A counter per key: the smallest virtual object that shows exclusive and shared handlers."""

from __future__ import annotations

import asyncio

import restate
from restate import ObjectContext, ObjectSharedContext

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: ObjectContext, n: int) -> int:
    # Exclusive: read-modify-write is safe because calls on one key run one at a time.
    value = (await ctx.get("count", type_hint=int) or 0) + n
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


@counter.handler()
async def reset(ctx: ObjectContext) -> None:
    ctx.clear("count")


@counter.handler(name="slowAdd")
async def slow_add(ctx: ObjectContext, req: dict) -> int:
    """Like `add`, but holds the key's lock for `millis` first.

    Tests use it to see other exclusive calls wait while shared `get` calls do not.
    The pause is inside `ctx.run` so a replay does not wait again.
    """
    before = await ctx.get("count", type_hint=int) or 0

    async def pause() -> None:
        await asyncio.sleep(req.get("millis", 1000) / 1000)

    await ctx.run_typed("pause", pause)
    value = before + req.get("n", 1)
    ctx.set("count", value)
    return value


app = restate.app(services=[counter])
