"""The service code every benchmark workload calls: one app, official Python SDK.

The same file is served by hypercorn for both servers, so any difference measured is the
server's. Handlers return values the load generator can check exactly, so a server that
answers fast but wrong shows up as errors, not as speed.
"""

from __future__ import annotations

from datetime import timedelta

import restate
from restate import Context, ObjectContext, ObjectSharedContext

bench = restate.Service("Bench")
bench_obj = restate.VirtualObject("BenchObj")
sink = restate.VirtualObject("Sink")


@bench.handler()
async def noop(ctx: Context, x: int) -> int:
    """(a) Stateless no-op: echo the argument."""
    return x


def _plus_one(x: int) -> int:
    return x + 1


@bench.handler()
async def steps(ctx: Context, x: int) -> int:
    """(b) Three sequential journaled steps; each must be acked before the next starts."""
    x = await ctx.run_typed("one", _plus_one, x=x)
    x = await ctx.run_typed("two", _plus_one, x=x)
    return await ctx.run_typed("three", _plus_one, x=x)


@bench.handler()
async def fanout(ctx: Context, x: int) -> int:
    """(d) Ten calls to `noop` started at once and gathered: returns 10 * x + 45."""
    calls = [ctx.service_call(noop, arg=x + i) for i in range(10)]
    await restate.gather(*calls)
    total = 0
    for call in calls:
        total += await call
    return total


@bench.handler()
async def sleep(ctx: Context, millis: int) -> int:
    """(e) One durable timer."""
    await ctx.sleep(timedelta(milliseconds=millis))
    return millis


@bench.handler(name="sleepUntil")
async def sleep_until(ctx: Context, req: dict) -> None:
    """(g, sleep mode) Suspend on a timer until a common deadline, then count the firing.

    The deadline is absolute (epoch ms) so that invocations started late by an ingestion
    backlog still fire together; `ctx.time()` journals "now" so replays agree.
    """
    now = await ctx.time()
    await ctx.sleep(timedelta(milliseconds=max(0.0, req["deadline"] - now * 1000)))
    ctx.object_send(hit, key=req["shard"], arg=1)


@bench_obj.handler(name="getset")
async def get_set(ctx: ObjectContext, _: int) -> int:
    """(c) Read-modify-write of one key's state: the n-th call on a key returns n.

    The load generator checks that each key returned exactly 1..n, which catches lost
    updates and broken per-key ordering, not only wrong answers.
    """
    n = (await ctx.get("n", type_hint=int) or 0) + 1
    ctx.set("n", n)
    return n


@sink.handler()
async def hit(ctx: ObjectContext, n: int) -> None:
    """(f, g) Count completed one-way invocations, sharded over keys to avoid one hot lock."""
    ctx.set("n", (await ctx.get("n", type_hint=int) or 0) + n)


@sink.handler(kind="shared")
async def count(ctx: ObjectSharedContext) -> int:
    return await ctx.get("n", type_hint=int) or 0


app = restate.app(services=[bench, bench_obj, sink])
