"""Handlers whose journals hold every kind of entry the Python SDK writes, for sys_journal.

Driven by tests/e2e/test_sql_journal.py, which compares the journal rows (entry_json and
entry_lite_json) and the official CLI's `invocations describe` between pyrestate and the
official server. Each handler finishes on its own: awakeables and signals are completed
by the handler itself, so no test has to learn an id while it waits.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

import restate
from restate import Context, ObjectContext, TerminalError, WorkflowContext

callee = restate.Service("JournalCallee")


@callee.handler()
async def echo(ctx: Context, text: str) -> str:
    return text


@callee.handler()
async def nap(ctx: Context, millis: int) -> None:
    await ctx.sleep(timedelta(milliseconds=millis))


entries = restate.VirtualObject("JournalEntries")


@entries.handler()
async def state(ctx: ObjectContext, _: None) -> list[str]:
    """GetEagerState (absent, then present), SetState, GetEagerStateKeys, ClearState,
    ClearAllState."""
    await ctx.get("a", type_hint=str)
    ctx.set("a", "one")
    ctx.set("b", "two")
    await ctx.get("a", type_hint=str)
    keys = await ctx.state_keys()
    ctx.clear("a")
    ctx.clear_all()
    return sorted(keys)


@entries.handler()
async def steps(ctx: ObjectContext, _: None) -> str:
    """Run (success and failure), Sleep, Call, OneWayCall (delayed), AttachInvocation,
    SendSignal (cancelling the delayed call)."""

    def first() -> str:
        return "first"

    def broken() -> str:
        raise TerminalError("broken step", status_code=418)

    await ctx.run_typed("first", first)
    with contextlib.suppress(TerminalError):
        await ctx.run_typed("broken", broken)
    await ctx.sleep(timedelta(milliseconds=10), name="pause")
    echoed = await ctx.service_call(echo, arg="hi")
    later = ctx.service_send(nap, arg=1, send_delay=timedelta(hours=1))
    attached = ctx.service_send(echo, arg="attached")
    await ctx.attach_invocation(await attached.invocation_id(), type_hint=str)
    ctx.cancel_invocation(await later.invocation_id())
    return echoed


@entries.handler()
async def signals(ctx: ObjectContext, _: None) -> str:
    """CompleteAwakeable (resolve and reject) and the Signal notifications they cause."""
    name, resolved = ctx.awakeable(type_hint=str)
    ctx.resolve_awakeable(name, "ok")
    value = await resolved
    name, rejected = ctx.awakeable(type_hint=str)
    ctx.reject_awakeable(name, "no", failure_code=409)
    with contextlib.suppress(TerminalError):
        await rejected
    return value


@entries.handler()
async def named(ctx: ObjectContext, _: None) -> str:
    """SendSignal by name (resolve and reject) to itself, and the Signal notifications."""
    me = ctx.request().id
    go = ctx.signal("go", type_hint=str)
    ctx.resolve_signal(me, "go", "went")
    value = await go
    stop = ctx.signal("stop", type_hint=str)
    ctx.reject_signal(me, "stop", "stopped", failure_code=410)
    with contextlib.suppress(TerminalError):
        await stop
    return value


@entries.handler()
async def fails(ctx: ObjectContext, _: None) -> None:
    """An Output command with a failure."""
    raise TerminalError("refused", status_code=422)


flow = restate.Workflow("JournalFlow")


@flow.main()
async def run(ctx: WorkflowContext, _: None) -> str:
    """PeekPromise (void), CompletePromise (success, failure, and one refused),
    GetPromise (success), PeekPromise (failure)."""
    await ctx.promise("p", type_hint=str).peek()
    await ctx.promise("p", type_hint=str).resolve("done")
    got = await ctx.promise("p", type_hint=str).value()
    await ctx.promise("q", type_hint=str).reject("bad", code=400)
    with contextlib.suppress(TerminalError):
        await ctx.promise("q", type_hint=str).peek()
    with contextlib.suppress(TerminalError):
        await ctx.promise("p", type_hint=str).resolve("again")
    return got


app = restate.app(services=[callee, entries, flow])
