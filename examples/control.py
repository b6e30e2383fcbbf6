"""Services for the invocation-control tests: what an operator cancels, kills or purges.

`Booking.book` reserves, then fails to charge on every attempt; cancelled, it undoes the
reservation (a compensation) and ends cancelled. `Parent.callChild` waits on
`Child.nap`, a long durable sleep. `Locker.hold` fails until it is paused, holding its
object key. `Steps.draw` draws two random numbers in two steps, for restarts that keep
some steps. Executions are counted in files (see durability.py).
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import restate
from restate import Context, InvocationRetryPolicy, ObjectContext, TerminalError

from examples.durability import _record

booking = restate.Service(
    "Booking",
    invocation_retry_policy=InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=100), max_interval=timedelta(milliseconds=300)
    ),
)


@booking.handler()
async def book(ctx: Context, tag: str) -> str:
    def reserve() -> None:
        _record(f"booking-{tag}.log", "reserved")

    def charge() -> None:
        _record(f"booking-{tag}.log", "charge failed")
        raise RuntimeError("the payment provider is down")

    await ctx.run_typed("reserve", reserve)
    try:
        await ctx.run_typed("charge", charge)
    except TerminalError:
        # Cancelled (or failed for good): give the reservation back, then fail.
        def undo() -> None:
            _record(f"booking-{tag}.log", "undone")

        await ctx.run_typed("undo", undo)
        raise
    return "booked"


child = restate.Service("Child")


@child.handler()
async def nap(ctx: Context, tag: str) -> str:
    _record(f"child-{tag}.log", "started")
    await ctx.sleep(timedelta(seconds=120))
    return "rested"


parent = restate.Service("Parent")


@parent.handler(name="callChild")
async def call_child(ctx: Context, tag: str) -> str:
    call = ctx.service_call(nap, arg=tag)
    child_id = await call.invocation_id()

    def note() -> None:  # tells the test which invocation the child is
        _record(f"parent-{tag}.children", child_id)

    await ctx.run_typed("note child", note)
    return await call


locker = restate.VirtualObject(
    "Locker",
    invocation_retry_policy=InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=50), max_attempts=2, on_max_attempts="pause"
    ),
)


@locker.handler()
async def hold(ctx: ObjectContext, fail: bool) -> str:
    if fail:
        raise RuntimeError("fails until an operator steps in")
    return "held"


steps = restate.Service("Steps")


@steps.handler()
async def draw(ctx: Context, tag: str) -> list[str]:
    def step(name: str) -> str:
        _record(f"steps-{tag}.log", name)
        return uuid.uuid4().hex

    first = await ctx.run_typed("first", step, name="first")
    second = await ctx.run_typed("second", step, name="second")
    return [first, second]


app = restate.app(services=[booking, child, parent, locker, steps])
