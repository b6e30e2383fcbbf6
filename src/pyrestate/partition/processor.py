"""The single writer of a partition: apply a batch of commands, commit it, release effects.

Commands queue up while the previous batch commits, so one transaction (one fsync) serves
many commands under load: group commit. Effects of a batch leave only after its commit.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from pyrestate.core.commands import Command, TimerFired
from pyrestate.core.effects import Completed, Effect, Reply, ScheduleTimer
from pyrestate.core.ids import InvocationId
from pyrestate.core.machine import PartitionMachine
from pyrestate.core.model import Output, Target, TimerKey
from pyrestate.storage.sqlite import SqlitePartitionStore

log = logging.getLogger(__name__)

MAX_BATCH = 2048


def now_ms() -> int:
    return int(time.time() * 1000)


class EffectHandler(Protocol):
    """The invoker: takes the effects that concern running attempts."""

    def handle(self, effect: Effect) -> None: ...


@dataclass(slots=True)
class Answer:
    """What an ingress request learns once its command is committed."""

    invocation_id: InvocationId | None
    output: Output | None
    # Resolves with the output when the invocation completes (if it was still running).
    completion: asyncio.Future[Output] | None
    target: Target | None = None


class PartitionProcessor:
    def __init__(
        self,
        store: SqlitePartitionStore,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.machine = PartitionMachine(store)
        self._clock = clock
        self._pending: list[Command] = []
        self._wakeup = asyncio.Event()
        self._replies: dict[int, asyncio.Future[Answer]] = {}
        self._completions: dict[InvocationId, list[asyncio.Future[Output]]] = {}
        self._next_token = 0
        self._timers: list[TimerKey] = []
        self._timer_handle: asyncio.TimerHandle | None = None
        self._timer_due: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="pyrestate-commit")
        self.invoker: EffectHandler | None = None

    # --- Lifecycle

    async def start(self) -> None:
        """Load what was committed, restart interrupted attempts, start the writer loop."""
        now = self._clock()
        self.machine.recover(self.store.active_invocations(), now)
        for key in self.store.timers():
            self._push_timer(key)
        # Restarted attempts are effects like any other; nothing new to commit for them
        # except their attempt numbers, so run them through a normal commit.
        await self._commit_and_release()
        self._task = asyncio.create_task(self._run(), name="partition-writer")

    @property
    def writer(self) -> asyncio.Task[None]:
        """The writer loop; it only ends by failing (e.g. the disk refuses a commit)."""
        assert self._task is not None
        return self._task

    async def stop(self) -> None:
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # never raises: a failure was reported already
        self._executor.shutdown(wait=True)

    # --- Submitting

    def submit(self, command: Command) -> None:
        self._pending.append(command)
        self._wakeup.set()

    async def request(self, make: Callable[[int], Command]) -> Answer:
        """Submit a command that carries a reply token; wait until it is committed."""
        token = self._next_token
        self._next_token += 1
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._replies[token] = fut
        self.submit(make(token))
        return await fut

    # --- The writer loop

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                now = self._clock()
                for command in batch:
                    try:
                        self.machine.apply(command, now)
                    except Exception:
                        # A bug in one command must not stop the partition.
                        log.exception("failed to apply %r", command)
                await self._commit_and_release()

    async def _commit_and_release(self) -> None:
        changes = self.machine.take_changes()
        effects = self.machine.take_effects()
        if changes:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self.store.commit, changes)
        self.machine.committed()
        for effect in effects:
            self._release(effect)

    def _release(self, effect: Effect) -> None:
        match effect:
            case Reply():
                self._answer(effect)
            case Completed():
                for fut in self._completions.pop(effect.invocation_id, ()):
                    if not fut.done():
                        fut.set_result(effect.output)
            case ScheduleTimer():
                self._push_timer(effect.key)
            case _:
                if self.invoker is not None:
                    self.invoker.handle(effect)

    def _answer(self, reply: Reply) -> None:
        fut = self._replies.pop(reply.token, None)
        if fut is None or fut.done():
            return
        completion = None
        if reply.pending and reply.invocation_id is not None:
            completion = asyncio.get_running_loop().create_future()
            self._completions.setdefault(reply.invocation_id, []).append(completion)
        fut.set_result(Answer(reply.invocation_id, reply.output, completion, reply.target))

    # --- Timers: a heap of due times; one loop callback armed for the earliest.

    def _push_timer(self, key: TimerKey) -> None:
        heapq.heappush(self._timers, key)
        if self._timer_due is None or key.wake_at < self._timer_due:
            self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        self._timer_due = None
        if not self._timers:
            return
        due = self._timers[0].wake_at
        loop = asyncio.get_running_loop()
        delay = max(0.0, (due - self._clock()) / 1000)
        self._timer_due = due
        self._timer_handle = loop.call_later(delay, self._fire_timers)

    def _fire_timers(self) -> None:
        self._timer_handle = None
        now = self._clock()
        while self._timers and self._timers[0].wake_at <= now:
            self.submit(TimerFired(heapq.heappop(self._timers)))
        self._arm_timer()
