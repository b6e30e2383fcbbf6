"""The single writer of a partition: apply a batch of commands, commit it, release effects.

Commands queue up while the previous batch commits, so one transaction (one fsync) serves
many commands under load: group commit. Effects of a batch leave only after its commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from pyrestate.core.commands import Command, Expire, TimerFired
from pyrestate.core.effects import Completed, Effect, Reply, ScheduleTimer
from pyrestate.core.ids import InvocationId
from pyrestate.core.machine import PartitionMachine
from pyrestate.core.model import InvocationStatus, Output, StateMutation, Target, TimerKey
from pyrestate.storage.sqlite import SqlitePartitionStore

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BATCH = 2048
# Timers due within this window are held in memory; later ones stay in storage until
# the window moves on, so memory follows the near future, not every pending timer.
TIMER_WINDOW_MS = 60_000
# How often storage is swept for completed invocations past their retention.
SWEEP_INTERVAL_MS = 1_000
SWEEP_BATCH = 1_000
# A timer whose command could not be applied is tried again after this long.
TIMER_RETRY_S = 5.0


def now_ms() -> int:
    return int(time.time() * 1000)


class PartitionUnavailable(Exception):
    """The writer stopped: nothing more can be accepted or answered."""


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
    previously: bool = False  # the request met an invocation that existed before it
    expires_at: int | None = None  # ``output`` is a stored completion kept until then
    outcome: str | None = None  # of a Control command
    pinned: tuple[int, str] | None = None  # of an incompatible deployment (see Reply)


class CommandRejected(Exception):
    """The command could not be applied; nothing of it was committed."""


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
        self._replies: dict[int, tuple[asyncio.Future[Answer], bool]] = {}
        self._completions: dict[InvocationId, list[asyncio.Future[Output]]] = {}
        self._next_token = 0
        self._timers: list[TimerKey] = []
        self._timer_handle: asyncio.TimerHandle | None = None
        self._timer_due: int | None = None
        self._timer_horizon = 0  # timers due before this are in the heap (or fired)
        self._next_sweep = 0
        self._housekeeping_handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._in_batch = False  # a batch is being applied and committed
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="pyrestate-commit")
        self.invoker: EffectHandler | None = None
        # Told of every batch's effects once committed and released (telemetry).
        self.observers: list[Callable[[list[Effect]], None]] = []
        # Told of every commit: the batch's commands and the commit's seconds (telemetry).
        self.on_commit: Callable[[int, float], None] | None = None

    # --- Lifecycle

    async def start(self) -> None:
        """Load what was committed, restart interrupted attempts, start the writer loop."""
        now = self._clock()
        active, mutations = self._committed_queues()
        self.machine.recover(active, now, mutations, self.store.producers())
        await self._advance_timer_window(now)
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
        for handle in (self._timer_handle, self._housekeeping_handle):
            if handle is not None:
                handle.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])  # never raises: a failure was reported already
        self._executor.shutdown(wait=True)

    def now(self) -> int:
        """The partition's time (epoch ms): what timers and delays are measured against."""
        return self._clock()

    def time_moved(self) -> None:
        """The clock jumped ahead (a test's virtual clock): fire what is due by now."""
        self._arm_timer()
        self._wakeup.set()

    def timers_settled(self) -> bool:
        """Every timer due by now has fired and committed, nothing waits to be applied."""
        now = self._clock()
        return (
            not self._pending
            and not self._in_batch
            and now < self._timer_horizon - TIMER_WINDOW_MS // 2
            and not (self._timers and self._timers[0].wake_at <= now)
        )

    def accepted_seq(self, producer: str) -> int | None:
        """The latest sequence number of ``producer`` accepted: where its records resume."""
        return self.machine.producers.get(producer)

    def queue_depth(self) -> int:
        """Commands submitted and not yet taken into a batch."""
        return len(self._pending)

    def live_from(self, subscription_id: str) -> int:
        """Invocations a subscription started that have not completed yet."""
        return self.machine.subscribed_live.get(subscription_id, 0)

    # --- Submitting

    def submit(self, command: Command) -> None:
        if self._task is not None and self._task.done():
            raise PartitionUnavailable("the partition stopped")
        self._pending.append(command)
        self._wakeup.set()

    async def request(self, make: Callable[[int], Command], follow: bool = True) -> Answer:
        """Submit a command that carries a reply token; wait until it is committed.

        ``follow``: the caller will wait for the invocation's completion if it is still
        running (a call or attach); a one-way send does not, and parks nothing.
        """
        return await self.request_soon(make, follow)

    def request_soon(
        self, make: Callable[[int], Command], follow: bool = True
    ) -> asyncio.Future[Answer]:
        """``request`` submitted now (commands keep the order of these calls); the future
        resolves once it is committed."""
        token = self._next_token
        self._next_token += 1
        fut: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._replies[token] = (fut, follow)
        self.submit(make(token))
        return fut

    def forget(self, invocation_id: InvocationId, completion: asyncio.Future[Output]) -> None:
        """A waiting request went away: drop its completion future (and cancel it)."""
        completion.cancel()
        futs = self._completions.get(invocation_id)
        if futs is None:
            return
        with contextlib.suppress(ValueError):
            futs.remove(completion)
        if not futs:
            del self._completions[invocation_id]

    # --- The writer loop

    async def _run(self) -> None:
        try:
            await self._loop()
        except BaseException as e:
            # Nothing more will be committed: tell every waiting request now.
            self._fail_waiters(e)
            raise

    def _fail_waiters(self, cause: BaseException) -> None:
        error = PartitionUnavailable(f"the partition stopped: {cause!r}")
        waiting: list[asyncio.Future[Answer] | asyncio.Future[Output]] = [
            fut for fut, _ in self._replies.values()
        ]
        for futs in self._completions.values():
            waiting.extend(futs)
        self._replies.clear()
        self._completions.clear()
        for fut in waiting:
            if fut.done():
                continue
            if isinstance(cause, asyncio.CancelledError):
                fut.cancel()  # an orderly stop
            else:
                fut.set_exception(error)

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while True:
                # Also between batches: a steady backlog must not starve timers or sweeps.
                await self._housekeeping()
                if not self._pending:
                    break
                if len(self._pending) <= MAX_BATCH:
                    batch, self._pending = self._pending, []
                else:  # rare: a backlog larger than one batch
                    batch = self._pending[:MAX_BATCH]
                    del self._pending[:MAX_BATCH]
                self._in_batch = True
                size = len(batch)
                await self._apply_batch(batch)
                del batch  # its commands hold request bodies: not until the next batch
                await self._commit_and_release(size)
                self._in_batch = False

    async def _apply_batch(self, batch: list[Command]) -> None:
        """Apply every command that can be applied; reject the others without a trace.

        A command that raises may have half-changed the machine, so the batch is discarded,
        memory reloaded from committed storage and the batch applied again without it.
        """
        now = self._clock()
        rejected: dict[int, Exception] = {}
        while True:
            await self._preload(c for i, c in enumerate(batch) if i not in rejected)
            failed = False
            for i, command in enumerate(batch):
                if i in rejected:
                    continue
                try:
                    self.machine.apply(command, now)
                except Exception as e:
                    log.exception("cannot apply %s; applying its batch again without it", command)
                    rejected[i] = e
                    failed = True
                    break
            if not failed:
                break
            self.machine.take_changes()
            self.machine.take_effects()
            active, mutations = await self._read(self._committed_queues)
            producers = await self._read(self.store.producers)
            self.machine.reload(active, now, mutations, producers)
        for i, error in rejected.items():
            self._reject(batch[i], error)

    def _committed_queues(self) -> tuple[list[InvocationStatus], list[StateMutation]]:
        """What memory rebuilds from: active invocations and waiting state mutations."""
        return self.store.active_invocations(), self.store.pending_mutations()

    def _reject(self, command: Command, error: Exception) -> None:
        if isinstance(command, TimerFired):
            # Still in storage (its removal was discarded): try again later, not at once.
            loop = asyncio.get_running_loop()
            loop.call_later(TIMER_RETRY_S, self._push_timer, command.key)
            return
        try:
            self.machine.reject(command, f"{type(error).__name__}: {error}")
        except Exception:
            log.exception("cannot reject %s", command)

    async def _preload(self, commands: Iterable[Command]) -> None:
        """Read what the batch needs from storage off the loop, before applying it."""
        needs = self.machine.needs(commands)
        if not needs:
            return
        store = self.store

        def load() -> tuple[dict, dict, dict, dict]:  # type: ignore[type-arg]
            statuses: dict[InvocationId, InvocationStatus | None] = dict.fromkeys(needs.invocations)
            statuses.update(store.invocations(needs.invocations))
            states = {ref: store.state(*ref) for ref in needs.states}
            promises = {key: store.promise(*key) for key in needs.promises}
            # Whole journals (only of invocations being killed): no length bound known yet.
            journals = {inv: store.journal(inv, 2**62) for inv in needs.journals}
            return statuses, states, promises, journals

        try:
            loaded = await self._read(load)
        except Exception:
            # Applying reads again, per command: a failure then rejects just that command.
            log.exception("cannot preload what a batch needs")
            return
        self.machine.preload(*loaded)

    async def _read(self, fn: Callable[[], T]) -> T:
        # On the commit thread: reads never run beside a commit of this partition.
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def _housekeeping(self) -> None:
        """Move the timer window on and sweep expired invocations when they are due."""
        now = self._clock()
        if now < self._housekeeping_due():
            return
        if now >= self._timer_horizon - TIMER_WINDOW_MS // 2:
            await self._advance_timer_window(now)
        if now >= self._next_sweep:
            expired = await self._read(lambda: self.store.expired(now, SWEEP_BATCH))
            if expired:
                self.submit(Expire(tuple(expired)))
            # A full page: more are waiting, sweep again right after this one commits.
            self._next_sweep = now if len(expired) == SWEEP_BATCH else now + SWEEP_INTERVAL_MS
        if self._housekeeping_handle is not None:
            self._housekeeping_handle.cancel()
        self._housekeeping_handle = asyncio.get_running_loop().call_later(
            max(0.0, (self._housekeeping_due() - now) / 1000), self._wakeup.set
        )

    def _housekeeping_due(self) -> int:
        return min(self._next_sweep, self._timer_horizon - TIMER_WINDOW_MS // 2)

    async def _advance_timer_window(self, now: int) -> None:
        start, end = self._timer_horizon, now + TIMER_WINDOW_MS
        due = await self._read(lambda: self.store.timers(before=end, since=start))
        self._timer_horizon = end
        for key in due:
            self._push_timer(key)

    async def _commit_and_release(self, commands: int = 0) -> None:
        """``commands``: how many the batch had (for telemetry)."""
        changes = self.machine.take_changes()
        effects = self.machine.take_effects()
        if changes:
            loop = asyncio.get_running_loop()
            started = time.perf_counter()
            await loop.run_in_executor(self._executor, self.store.commit, changes)
            if self.on_commit is not None:
                try:
                    self.on_commit(commands, time.perf_counter() - started)
                except Exception:
                    log.exception("the commit observer failed")
        self.machine.committed()
        for effect in effects:
            self._release(effect)
        for observe in self.observers:
            try:
                observe(effects)
            except Exception:
                log.exception("an observer of committed effects failed")

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
        fut, follow = self._replies.pop(reply.token, (None, False))
        if fut is None or fut.done():
            return
        if reply.error is not None:
            fut.set_exception(CommandRejected(reply.error))
            return
        completion = None
        if follow and reply.pending and reply.invocation_id is not None:
            completion = asyncio.get_running_loop().create_future()
            self._completions.setdefault(reply.invocation_id, []).append(completion)
        fut.set_result(
            Answer(
                reply.invocation_id,
                reply.output,
                completion,
                reply.target,
                reply.previously,
                reply.expires_at,
                reply.outcome,
                reply.pinned,
            )
        )

    # --- Timers: a heap of due times; one loop callback armed for the earliest.

    def _push_timer(self, key: TimerKey) -> None:
        if key.wake_at >= self._timer_horizon:
            return  # in storage; loaded when the window reaches it
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
