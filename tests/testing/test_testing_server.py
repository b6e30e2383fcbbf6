"""The embedded test server: calls, sends, awakeables, state, the virtual clock, crashes.

The services are written with the official SDK and run in the test's process.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import restate
from restate import Context, ObjectContext, TerminalError

from pyrestate.testing import InvocationError, RestateTestServer, wait_for

steps: list[str] = []  # what the handlers' side effects did, in order

napper = restate.Service("Napper")


@napper.handler()
async def nap(ctx: Context, days: int) -> str:
    def before() -> str:
        steps.append("before")
        return "rested"

    word = await ctx.run_typed("before", before)
    await ctx.sleep(timedelta(days=days))
    steps.append("after")
    return word


@napper.handler()
async def wait(ctx: Context) -> str:
    name, promise = ctx.awakeable(type_hint=str)

    def publish() -> str:  # hands the awakeable's id to the test
        steps.append(name)
        return name

    await ctx.run_typed("publish", publish)
    return await promise


@napper.handler()
async def fail(ctx: Context) -> str:
    raise TerminalError("no way", status_code=422)


counter = restate.VirtualObject("Tally")


@counter.handler()
async def add(ctx: ObjectContext, n: int) -> int:
    total = (await ctx.get("total", type_hint=int) or 0) + n
    ctx.set("total", total)
    return total


app = restate.app(services=[napper, counter])


@pytest.fixture
def restate_app() -> object:
    steps.clear()
    return app


def _sleeping(server: RestateTestServer, inv: str) -> bool:
    return any(e["entry_type"] == "Command: Sleep" for e in server.journal(inv))


def _status(server: RestateTestServer, inv: str) -> str:
    (row,) = server.sql(f"SELECT status FROM sys_invocation WHERE id = '{inv}'")
    return str(row["status"])


def test_a_30_day_sleep_is_over_at_once(restate_server: RestateTestServer) -> None:
    started = time.monotonic()
    inv = restate_server.send("Napper", "nap", 30)
    wait_for(lambda: _sleeping(restate_server, inv))
    restate_server.advance(timedelta(days=29))
    assert _status(restate_server, inv) != "completed"
    restate_server.advance(timedelta(days=1, seconds=1))
    assert restate_server.attach(inv) == "rested"
    # Not 30 days, nor any real wait: only the work itself.
    assert time.monotonic() - started < 10
    assert steps == ["before", "after"]


def test_a_handler_survives_a_crash_mid_sleep(restate_server: RestateTestServer) -> None:
    inv = restate_server.send("Napper", "nap", 1)
    wait_for(lambda: _sleeping(restate_server, inv))
    restate_server.crash()
    with pytest.raises(RuntimeError, match="down"):
        restate_server.call("Tally", "add", 1, key="a")
    restate_server.restart()
    restate_server.advance(timedelta(days=1))
    assert restate_server.attach(inv) == "rested"
    assert steps == ["before", "after"]  # the step before the sleep ran once


def test_delayed_sends_wait_for_virtual_time(restate_server: RestateTestServer) -> None:
    before = restate_server.now()
    inv = restate_server.send("Tally", "add", 5, key="k", delay=timedelta(hours=2))
    restate_server.advance(timedelta(hours=1, minutes=59))
    assert _status(restate_server, inv) == "scheduled"  # not yet due
    restate_server.advance(timedelta(minutes=1))
    assert restate_server.attach(inv) == 5
    assert restate_server.state("Tally", "k") == {"total": 5}
    # The server's clock moved with the test's, not with the wall's.
    assert timedelta(hours=2) <= restate_server.now() - before < timedelta(hours=2, minutes=1)


def test_awakeables_errors_and_listing(restate_server: RestateTestServer) -> None:
    inv = restate_server.send("Napper", "wait")
    wait_for(lambda: len(steps) == 1)
    restate_server.resolve_awakeable(steps[0], "done")
    assert restate_server.attach(inv) == "done"
    with pytest.raises(InvocationError) as failed:
        restate_server.call("Napper", "fail")
    assert (failed.value.status, failed.value.message) == (422, "no way")
    with pytest.raises(InvocationError) as unknown:
        restate_server.call("Nobody", "greet")
    assert unknown.value.status == 404
    assert restate_server.call("Tally", "add", 2, key="x", idempotency_key="once") == 2
    assert restate_server.call("Tally", "add", 2, key="x", idempotency_key="once") == 2
    listed = restate_server.invocations(service="Tally")
    assert [i["status"] for i in listed] == ["completed"]
    cancel = restate_server.admin("PATCH", f"/invocations/{inv}/cancel")
    assert cancel.status_code == 409  # completed already
