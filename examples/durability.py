"""Services for the durability tests: retries, crashes and terminal errors.

Some effects are counted in files, not in Restate state, because the tests must see
what really executed (including executions whose results Restate never stored). The
directory comes from PYRESTATE_E2E_COUNT_DIR; every count file has one line per event.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

import restate
from restate import Context, ObjectContext, ObjectSharedContext, RunOptions, TerminalError

COUNT_DIR_ENV = "PYRESTATE_E2E_COUNT_DIR"


def _record(name: str, line: str) -> int:
    """Append `line` to the count file `name` and return how many lines it now has."""
    directory = Path(os.environ.get(COUNT_DIR_ENV) or "/tmp/pyrestate-e2e-counts")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    # One small O_APPEND write per event keeps lines whole even with concurrent writers.
    with open(path, "a") as f:
        f.write(line + "\n")
    with open(path) as f:
        return sum(1 for _ in f)


flaky = restate.Service("Flaky")


@flaky.handler(name="run")
async def flaky_run(ctx: Context, key: str) -> dict:
    """Stores one side effect, then fails twice with a retryable error, then succeeds."""

    def effect() -> str:
        _record(f"flaky-{key}.run", "run")
        return f"effect-{key}"

    # Once stored, this result is replayed on the retries: the file must stay at 1 line.
    effect_result = await ctx.run_typed("effect", effect)
    # Outside ctx.run on purpose: this line is written by every attempt that gets here.
    attempt = _record(f"flaky-{key}.attempts", "attempt")
    if attempt <= 2:
        # Any exception other than TerminalError makes Restate retry the invocation.
        raise RuntimeError(f"transient failure {attempt}")
    return {"effect": effect_result, "attempt": attempt}


worker = restate.VirtualObject("Worker")


@worker.handler()
async def work(ctx: ObjectContext, req: dict) -> int:
    """One unit of work: a (possibly slow) ctx.run, then a durable tally in state.

    The marker file `work-<tag>.log` gets "start"/"end" around each real execution of
    the run body and "after" each time an attempt gets past the run, which only happens
    once Restate has stored its result. So a "start" after the first "after" means a
    stored result was executed again.
    """
    tag: str = req["tag"]
    millis: int = req.get("millis", 0)

    async def step() -> str:
        _record(f"work-{tag}.log", "start")
        # asyncio.sleep, not time.sleep: other invocations share this event loop.
        await asyncio.sleep(millis / 1000)
        _record(f"work-{tag}.log", "end")
        return tag

    await ctx.run_typed("step", step)
    _record(f"work-{tag}.log", "after")
    count = (await ctx.get("count", type_hint=int) or 0) + 1
    done = await ctx.get("done", type_hint=list) or []
    done.append(tag)
    ctx.set("count", count)
    ctx.set("done", done)
    return count


@worker.handler(kind="shared")
async def status(ctx: ObjectSharedContext) -> dict:
    return {
        "count": await ctx.get("count", type_hint=int) or 0,
        "done": await ctx.get("done", type_hint=list) or [],
    }


faulty = restate.Service("Faulty")


@faulty.handler()
async def terminal(ctx: Context, req: dict) -> None:
    """Fails for good with the requested HTTP-like code; Restate must not retry it."""
    _record(f"faulty-{req.get('tag', 'default')}.calls", "call")
    raise TerminalError(req.get("message", "failed on purpose"), status_code=req.get("code", 500))


budget = restate.Service("Budget")


@budget.handler()
async def two_runs(ctx: Context, key: str) -> str:
    """A first run that fails twice before it succeeds, then a second run that always
    fails with a budget of 3 attempts. The SDK counts a run's attempts with the retry
    count the server reports since the last stored command, so the second run must get
    its full 3 attempts, whatever the first one used."""

    def first() -> str:
        if _record(f"budget-{key}.first", "run") <= 2:
            raise RuntimeError("first run fails twice")
        return "ok"

    def second() -> str:
        _record(f"budget-{key}.second", "run")
        raise RuntimeError("second run always fails")

    options: RunOptions[str] = RunOptions(
        max_attempts=3, initial_retry_interval=timedelta(milliseconds=10)
    )
    await ctx.run_typed("first", first, options)
    try:
        await ctx.run_typed("second", second, options)
    except TerminalError as e:
        return f"second gave up: {e.message}"
    return "unreachable"


app = restate.app(services=[flaky, worker, faulty, budget])
