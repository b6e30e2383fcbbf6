"""State transitions of the partition machine, driven command by command."""

from __future__ import annotations

import copy
from dataclasses import replace

from pyrestate.core.changes import Changes
from pyrestate.core.commands import (
    AppendCommand,
    Attach,
    AttemptEnded,
    AttemptFailed,
    DeliverNotification,
    Expire,
    Invoke,
    ProposeRunCompletion,
    Retention,
    RetryPolicy,
    Suspend,
    TimerFired,
)
from pyrestate.core.effects import Completed, Notify, Reply, ScheduleTimer, StartAttempt
from pyrestate.core.ids import InvocationId
from pyrestate.core.machine import PartitionMachine
from pyrestate.core.model import (
    CallerRef,
    Failure,
    HandlerType,
    InvocationStatus,
    JournalEntry,
    Output,
    Promise,
    ServiceType,
    StateMutation,
    Status,
    Target,
    TimerKey,
    TimerKind,
)
from pyrestate.core.notifications import completion, signal
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType

COUNTER_ADD = Target("Counter", "add", "k", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE)
COUNTER_GET = Target("Counter", "get", "k", ServiceType.VIRTUAL_OBJECT, HandlerType.SHARED)
GREET = Target("Greeter", "greet", None, ServiceType.SERVICE, None)


class MemoryStore:
    """Committed storage as plain dicts: what the SQLite store does, minus the disk.

    Records are copied in and out, as through a disk, so memory and storage never alias.
    """

    def __init__(self) -> None:
        self.statuses: dict[InvocationId, InvocationStatus] = {}
        self.kv: dict[tuple[str, str], dict[bytes, bytes]] = {}
        self.promises: dict[tuple[str, str, str], Promise] = {}
        self.mutations: dict[int, StateMutation] = {}
        self.journal: dict[tuple[InvocationId, int], JournalEntry] = {}
        self.timers: set[TimerKey] = set()

    def invocation(self, invocation_id: InvocationId) -> InvocationStatus | None:
        return copy.deepcopy(self.statuses.get(invocation_id))

    def active_invocations(self) -> list[InvocationStatus]:
        return [
            copy.deepcopy(st)
            for st in self.statuses.values()
            if st.status not in (Status.COMPLETED, Status.SCHEDULED)
        ]

    def state(self, service: str, key: str) -> dict[bytes, bytes]:
        return dict(self.kv.get((service, key), {}))

    def promise(self, service: str, key: str, name: str) -> Promise | None:
        return copy.deepcopy(self.promises.get((service, key, name)))

    def journal_of(self, inv: InvocationId) -> list[JournalEntry]:
        return [
            e for (i, _), e in sorted(self.journal.items(), key=lambda kv: kv[0][1]) if i == inv
        ]

    def commit(self, c: Changes) -> None:
        for inv in [*c.purged, *c.expired]:
            if inv in c.purged or self.statuses[inv].status is Status.COMPLETED:
                self.statuses.pop(inv, None)
                self.timers = {t for t in self.timers if t.invocation_id != inv.to_bytes()}
                self.journal = {k: e for k, e in self.journal.items() if k[0] != inv}
        self.statuses.update({i: copy.deepcopy(st) for i, st in c.statuses.items()})
        for inv, idx, entry, _at, _callee in c.journal:
            assert (inv, idx) not in self.journal, "journal index written twice"
            self.journal[(inv, idx)] = entry
        self.timers.update(c.timers_added)
        self.timers.difference_update(c.timers_removed)
        for op in c.state:
            obj = self.kv.setdefault((op.service, op.key), {})
            if op.name is None:
                obj.clear()
            elif op.value is None:
                obj.pop(op.name, None)
            else:
                obj[op.name] = op.value
        self.promises.update({k: copy.deepcopy(p) for k, p in c.promises.items()})
        self.mutations.update({m.seq: m for m in c.mutations_queued})
        for seq in c.mutations_done:
            self.mutations.pop(seq, None)
        for inv in c.journals_purged:
            self.journal = {k: e for k, e in self.journal.items() if k[0] != inv}
        for ref in c.workflows_cleared:
            self.kv.pop(ref, None)
            self.promises = {k: p for k, p in self.promises.items() if k[:2] != ref}


class CountingLoader:
    """The machine's view of storage; counts the reads it makes while applying."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.reads = 0

    def invocation(self, invocation_id: InvocationId) -> InvocationStatus | None:
        self.reads += 1
        return self.store.invocation(invocation_id)

    def state(self, service: str, key: str) -> dict[bytes, bytes]:
        self.reads += 1
        return self.store.state(service, key)

    def promise(self, service: str, key: str, name: str) -> Promise | None:
        self.reads += 1
        return self.store.promise(service, key, name)

    def journal(self, invocation_id: InvocationId, length: int) -> list[JournalEntry]:
        self.reads += 1
        return self.store.journal_of(invocation_id)[:length]


class Harness:
    """Drives the machine as the partition writer does: preload, apply, commit, release."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.loader = CountingLoader(self.store)
        self.machine = PartitionMachine(self.loader)
        self.now = 1_000_000
        self._n = 0

    def new_id(self, pk: int = 7) -> InvocationId:
        self._n += 1
        return InvocationId(pk, self._n.to_bytes(16, "big"))

    def step(self, *commands: object) -> list[object]:
        needs = self.machine.needs(commands)  # type: ignore[arg-type]
        self.machine.preload(
            {i: self.store.invocation(i) for i in needs.invocations},
            {ref: self.store.state(*ref) for ref in needs.states},
            {key: self.store.promise(*key) for key in needs.promises},
            {inv: self.store.journal_of(inv) for inv in needs.journals},
        )
        for cmd in commands:
            self.machine.apply(cmd, self.now)  # type: ignore[arg-type]
        self.store.commit(self.machine.take_changes())
        effects = self.machine.take_effects()
        self.machine.committed()
        return effects

    def invoke(self, target: Target, reply: int | None = 1, **kw: object) -> InvocationId:
        inv = self.new_id()
        self.step(Invoke(inv, target, b"in", reply=reply, **kw))  # type: ignore[arg-type]
        return inv

    def append(self, inv: InvocationId, attempt: int, msg_type: int, msg: object) -> list[object]:
        entry = JournalEntry(msg_type, msg.SerializeToString())  # type: ignore[attr-defined]
        return self.step(AppendCommand(inv, attempt, "dp", entry, msg))  # type: ignore[arg-type]

    def finish(self, inv: InvocationId, attempt: int, value: bytes = b"out") -> list[object]:
        out = pb.OutputCommandMessage()
        out.value.content = value
        effects = self.append(inv, attempt, MessageType.OUTPUT_COMMAND, out)
        return effects + self.step(AttemptEnded(inv, attempt, "dp"))


def of(effects: list[object], kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in effects if isinstance(e, kind)]


def test_invocation_runs_and_completes_with_its_output() -> None:
    h = Harness()
    inv = h.new_id()
    effects = h.step(Invoke(inv, GREET, b'"bob"', reply=5))
    (start,) = of(effects, StartAttempt)
    assert start.attempt == 1 and start.journal_length == 1
    assert start.journal is not None and start.journal[0].type == MessageType.INPUT_COMMAND
    assert of(effects, Reply)[0] == Reply(5, inv, pending=True)
    assert h.store.statuses[inv].status is Status.INVOKED

    effects = h.finish(inv, 1, b'"hi"')
    assert of(effects, Completed) == [Completed(inv, Output(value=b'"hi"'))]
    st = h.store.statuses[inv]
    assert st.status is Status.COMPLETED and st.journal_length == 2
    assert inv not in h.machine.invocations  # memory let go once committed
    # A completed invocation still answers attach from storage.
    (reply,) = of(h.step(Attach(inv, 9)), Reply)
    assert reply.output == Output(value=b'"hi"')


def test_exclusive_handlers_queue_per_key_and_run_in_arrival_order() -> None:
    h = Harness()
    first, second, third = h.invoke(COUNTER_ADD), h.new_id(), h.new_id()
    h.step(Invoke(second, COUNTER_ADD, b"2"), Invoke(third, COUNTER_ADD, b"3"))
    assert h.store.statuses[second].status is Status.INBOXED
    assert h.store.statuses[third].status is Status.INBOXED
    # A shared handler on the same key does not wait for the lock.
    shared = h.new_id()
    (start,) = of(h.step(Invoke(shared, COUNTER_GET, b"")), StartAttempt)
    assert start.invocation_id == shared

    effects = h.finish(first, 1)
    assert [s.invocation_id for s in of(effects, StartAttempt)] == [second]
    effects = h.finish(second, 1)
    assert [s.invocation_id for s in of(effects, StartAttempt)] == [third]
    h.finish(third, 1)
    # Nothing of the key stays in memory once it is idle.
    assert ("Counter", "k") not in h.machine.objects
    assert [i for i in (first, second, third) if i in h.machine.invocations] == []


def test_reports_of_a_stale_attempt_are_ignored() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    policy = RetryPolicy(initial_interval_ms=100)
    h.step(AttemptFailed(inv, 1, "dp", Failure(500, "boom"), policy))
    h.now += 100
    timer = h.store.statuses[inv].next_retry_at
    assert timer == h.now
    effects = h.step(TimerFired(_timer_key(h, inv, TimerKind.RETRY)))
    assert of(effects, StartAttempt)[0].attempt == 2
    # Attempt 1 ends late: no effect on the invocation now on attempt 2.
    assert of(h.finish(inv, 1), Completed) == []
    assert h.store.statuses[inv].status is Status.INVOKED
    assert of(h.finish(inv, 2), Completed)


def _timer_key(h: Harness, inv: InvocationId, kind: TimerKind) -> TimerKey:
    st = h.store.statuses[inv]
    return TimerKey(st.next_retry_at or 0, inv.to_bytes(), kind, st.attempt, st.created_at)


def test_retries_back_off_exponentially_then_pause() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    policy = RetryPolicy(initial_interval_ms=500, factor=2, max_interval_ms=1500, max_attempts=4)
    delays = []
    for attempt in range(1, 4):
        effects = h.step(AttemptFailed(inv, attempt, "dp", Failure(500, "boom"), policy))
        (timer,) = [e.key for e in of(effects, ScheduleTimer) if e.key.kind is TimerKind.RETRY]
        delays.append(timer.wake_at - h.now)
        h.now = timer.wake_at
        h.step(TimerFired(timer))
    assert delays == [500, 1000, 1500]
    h.step(AttemptFailed(inv, 4, "dp", Failure(500, "boom"), policy))
    st = h.store.statuses[inv]
    assert st.status is Status.PAUSED and st.retry_count == 4 and st.attempt_failures == 4
    assert st.last_failure == Failure(500, "boom")


def test_terminal_failure_completes_with_the_failure() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    effects = h.step(AttemptFailed(inv, 1, "dp", Failure(409, "no"), RetryPolicy(), terminal=True))
    assert of(effects, Completed) == [Completed(inv, Output(failure=Failure(409, "no")))]


def test_run_completion_is_forwarded_and_suspension_resumes_on_notification() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    run = pb.RunCommandMessage(result_completion_id=1)
    h.append(inv, 1, MessageType.RUN_COMMAND, run)
    note = completion(MessageType.RUN_COMPLETION, 1, Output(value=b"42"))
    effects = h.step(ProposeRunCompletion(inv, 1, "dp", 1, note))
    assert of(effects, Notify) == [Notify(inv, 1, 2, note)]

    # Suspends waiting for signal 17; a signal arrives and a new attempt starts.
    h.step(Suspend(inv, 1, "dp", frozenset(), frozenset({17})))
    assert h.store.statuses[inv].status is Status.SUSPENDED
    assert of(h.step(DeliverNotification(inv, signal(16, None), signal=16)), StartAttempt) == []
    effects = h.step(DeliverNotification(inv, signal(17, None), signal=17))
    (start,) = of(effects, StartAttempt)
    assert start.attempt == 2 and start.journal_length == 5 and start.journal is None
    # The same signal again is ignored: the first resolution wins.
    h.step(DeliverNotification(inv, signal(17, Output(value=b"x")), signal=17))
    assert h.store.statuses[inv].journal_length == 5


def test_suspension_on_an_already_arrived_completion_restarts_at_once() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    h.append(inv, 1, MessageType.RUN_COMMAND, pb.RunCommandMessage(result_completion_id=1))
    h.step(ProposeRunCompletion(inv, 1, "dp", 1, completion(MessageType.RUN_COMPLETION, 1, None)))
    effects = h.step(Suspend(inv, 1, "dp", frozenset({1}), frozenset()))
    assert of(effects, StartAttempt)[0].attempt == 2


def test_idempotency_key_joins_the_first_invocation() -> None:
    h = Harness()
    # Idempotent requests carry the id derived from their key: duplicates share it.
    first = h.new_id()
    h.step(Invoke(first, GREET, b"", idempotency_key="abc", reply=1))
    (reply,) = of(h.step(Invoke(first, GREET, b"other", idempotency_key="abc", reply=2)), Reply)
    assert reply == Reply(2, first, pending=True, previously=True)
    assert h.store.statuses[first].attempt == 1  # not started twice
    h.finish(first, 1, b"done")
    (reply,) = of(h.step(Invoke(first, GREET, b"", idempotency_key="abc", reply=3)), Reply)
    # From the stored completion: with the time it is kept until (1 day by default).
    expected = Reply(3, first, Output(value=b"done"), target=GREET, previously=True)
    assert reply == replace(expected, expires_at=h.now + 86_400_000)


def test_lazy_state_reads_see_writes_of_the_same_batch() -> None:
    h = Harness()
    inv = h.invoke(COUNTER_ADD)
    set_msg = pb.SetStateCommandMessage(key=b"v")
    set_msg.value.content = b"1"
    get_msg = pb.GetLazyStateCommandMessage(key=b"v", result_completion_id=1)
    entries = [
        AppendCommand(inv, 1, "dp", JournalEntry(MessageType.SET_STATE_COMMAND, b""), set_msg),
        AppendCommand(inv, 1, "dp", JournalEntry(MessageType.GET_LAZY_STATE_COMMAND, b""), get_msg),
    ]
    (note,) = of(h.step(*entries), Notify)
    parsed = pb.NotificationTemplate.FromString(note.entry.body)
    assert parsed.completion_id == 1 and parsed.value.content == b"1"
    assert h.store.kv[("Counter", "k")] == {b"v": b"1"}


def test_sleep_timer_completes_the_sleep() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    sleep = pb.SleepCommandMessage(wake_up_time=h.now + 2000, result_completion_id=1)
    effects = h.append(inv, 1, MessageType.SLEEP_COMMAND, sleep)
    (timer,) = [e.key for e in of(effects, ScheduleTimer)]
    assert timer.kind is TimerKind.SLEEP and timer.wake_at == h.now + 2000
    h.step(Suspend(inv, 1, "dp", frozenset({1}), frozenset()))
    h.now += 2000
    effects = h.step(TimerFired(timer))
    assert of(effects, StartAttempt)[0].attempt == 2


def test_recovery_restarts_running_attempts_and_keeps_inbox_order() -> None:
    h = Harness()
    running = h.invoke(COUNTER_ADD)
    waiting = [h.new_id() for _ in range(3)]
    h.step(*(Invoke(w, COUNTER_ADD, b"") for w in waiting))
    # A new machine over the same committed storage, as after a crash.
    fresh = PartitionMachine(h.store)
    active = [s for s in h.store.statuses.values() if s.status is not Status.COMPLETED]
    fresh.recover(active, h.now)
    effects = fresh.take_effects()
    assert [(e.invocation_id, e.attempt) for e in of(effects, StartAttempt)] == [(running, 2)]
    h.store.commit(fresh.take_changes())
    fresh.committed()
    h.machine = fresh
    for expected in waiting:
        nxt = of(h.finish(running, h.store.statuses[running].attempt), StartAttempt)
        assert [s.invocation_id for s in nxt] == [expected]
        running = expected


def test_call_creates_callee_and_delivers_its_result_to_the_caller() -> None:
    h = Harness()
    caller = h.invoke(GREET)
    callee_id = h.new_id()
    call = pb.CallCommandMessage(
        service_name="Counter",
        handler_name="add",
        key="k",
        invocation_id_notification_idx=1,
        result_completion_id=2,
    )
    callee = Invoke(callee_id, COUNTER_ADD, b"1", caller=CallerRef(caller, 2))
    entry = JournalEntry(MessageType.CALL_COMMAND, call.SerializeToString())
    effects = h.step(AppendCommand(caller, 1, "dp", entry, call, callee=callee))
    notes = of(effects, Notify)
    assert pb.NotificationTemplate.FromString(notes[0].entry.body).invocation_id == str(callee_id)
    assert [s.invocation_id for s in of(effects, StartAttempt)] == [callee_id]
    effects = h.finish(callee_id, 1, b"7")
    (note,) = [n for n in of(effects, Notify) if n.invocation_id == caller]
    parsed = pb.NotificationTemplate.FromString(note.entry.body)
    assert note.entry.type == MessageType.CALL_COMPLETION
    assert parsed.completion_id == 2 and parsed.value.content == b"7"


# --- Hardening: bounded numbers, lives of ids, retention, retry bookkeeping, memory


def test_backoff_delay_stays_bounded_after_a_thousand_failures() -> None:
    policy = RetryPolicy(
        initial_interval_ms=100, factor=2, max_interval_ms=60_000, max_attempts=None
    )
    assert policy.delay_ms(1) == 100
    assert policy.delay_ms(1100) == 60_000  # 2**1099 overflows a float
    h = Harness()
    inv = h.invoke(GREET)
    st = h.machine.invocations[inv]
    st.attempt_failures = 1099
    effects = h.step(AttemptFailed(inv, 1, "dp", Failure(500, "boom"), policy))
    (timer,) = of(effects, ScheduleTimer)
    assert timer.key.wake_at == h.now + 60_000
    assert h.store.statuses[inv].status is Status.BACKING_OFF


def _sleep(inv: InvocationId, attempt: int, h: Harness, wake_at: int, cid: int) -> TimerKey:
    msg = pb.SleepCommandMessage(wake_up_time=wake_at, result_completion_id=cid)
    (timer,) = of(h.append(inv, attempt, MessageType.SLEEP_COMMAND, msg), ScheduleTimer)
    return timer.key


def test_a_timer_of_an_earlier_life_does_not_reach_a_later_one() -> None:
    h = Harness()
    inv = h.new_id()
    h.step(Invoke(inv, GREET, b"1", idempotency_key="k", reply=1))
    old_sleep = _sleep(inv, 1, h, h.now + 7 * 86_400_000, 1)
    h.finish(inv, 1)  # ends without awaiting its sleep
    h.now += 86_400_000 + 1
    h.step(Expire((inv,)))
    assert inv not in h.store.statuses
    assert h.store.timers == set(), "purge takes the invocation's timers along"
    # The same idempotency key, hence the same id, starts a new life.
    h.now += 1
    h.step(Invoke(inv, GREET, b"2", idempotency_key="k", reply=2))
    new_sleep = _sleep(inv, 1, h, h.now + 86_400_000, 1)
    effects = h.step(TimerFired(old_sleep))
    assert of(effects, Notify) == []
    assert h.store.statuses[inv].completions_seen == set()
    assert of(h.step(TimerFired(new_sleep)), Notify)


def test_a_call_result_does_not_reach_a_later_life_of_its_caller() -> None:
    h = Harness()
    caller = h.invoke(GREET)
    callee = h.new_id()
    call = pb.CallCommandMessage(
        service_name="Greeter", handler_name="greet", result_completion_id=2
    )
    call.invocation_id_notification_idx = 1
    entry = JournalEntry(MessageType.CALL_COMMAND, call.SerializeToString())
    h.step(
        AppendCommand(
            caller,
            1,
            "dp",
            entry,
            call,
            callee=Invoke(callee, GREET, b"", caller=CallerRef(caller, 2)),
        )
    )
    assert h.store.statuses[callee].callers == (
        CallerRef(caller, 2, h.store.statuses[caller].created_at),
    )
    # The caller's record is replaced by a new life of the same id (as after a purge).
    h.store.statuses[caller].created_at += 1
    h.machine.invocations[caller].created_at += 1
    seen_before = set(h.store.statuses[caller].completions_seen)
    h.finish(callee, 1)
    assert h.store.statuses[caller].completions_seen == seen_before


def test_retention_is_swept_from_storage_and_keeps_nothing_in_memory() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    effects = h.finish(inv, 1)
    assert of(effects, ScheduleTimer) == [], "no timer per completed invocation"
    assert h.store.statuses[inv].status is Status.COMPLETED
    assert inv not in h.machine.invocations
    running = h.invoke(GREET)
    h.step(Expire((inv, running)))
    assert inv not in h.store.statuses
    assert h.store.statuses[running].status is Status.INVOKED, "only completed ones expire"


def test_zero_retention_purges_at_completion() -> None:
    h = Harness()
    inv = h.invoke(GREET, retention=Retention(0, 0))
    assert of(h.finish(inv, 1), Completed)
    assert inv not in h.store.statuses


def test_retry_count_resets_on_progress_and_the_policy_counts_the_whole_run() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    policy = RetryPolicy(initial_interval_ms=100, factor=2, max_attempts=None)

    def fail(attempt: int) -> StartAttempt:
        effects = h.step(AttemptFailed(inv, attempt, "dp", Failure(500, "x"), policy))
        (timer,) = of(effects, ScheduleTimer)
        h.now = timer.key.wake_at
        (start,) = of(h.step(TimerFired(timer.key)), StartAttempt)
        return start

    assert fail(1).retry_count == 1
    start = fail(2)
    assert start.retry_count == 2 and start.since_progress_ms == h.now - 1_000_000
    h.now += 50
    h.append(
        inv,
        3,
        MessageType.SLEEP_COMMAND,
        pb.SleepCommandMessage(wake_up_time=h.now + 10**6, result_completion_id=1),
    )
    progress_at = h.now
    h.now += 20
    effects = h.step(AttemptFailed(inv, 3, "dp", Failure(500, "x"), policy))
    (timer,) = [e for e in of(effects, ScheduleTimer) if e.key.kind is TimerKind.RETRY]
    assert timer.key.wake_at - h.now == 400, "backoff keeps growing across progress"
    h.now = timer.key.wake_at
    (start,) = of(h.step(TimerFired(timer.key)), StartAttempt)
    assert start.retry_count == 1, "the SDK sees retries since the last stored command"
    assert start.since_progress_ms == h.now - progress_at


def test_the_sdk_can_ask_to_pause() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    effects = h.step(AttemptFailed(inv, 1, "dp", Failure(500, "x"), RetryPolicy(), pause=True))
    assert of(effects, ScheduleTimer) == []
    assert h.store.statuses[inv].status is Status.PAUSED


def test_each_notification_writes_one_seen_row() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    for cid in range(1, 6):
        entry = completion(MessageType.RUN_COMPLETION, cid, Output(value=b"v"))
        h.machine.apply(ProposeRunCompletion(inv, 1, "dp", cid, entry), h.now)
        changes = h.machine.take_changes()
        assert len(changes.seen) == 1, "a step writes its own row, not the whole set again"
        h.store.commit(changes)
        h.machine.take_effects()
        h.machine.committed()


def test_scheduled_invocations_wait_in_storage_and_nothing_reads_disk_while_applying() -> None:
    h = Harness()
    inv = h.new_id()
    effects = h.step(Invoke(inv, GREET, b"", execution_time=h.now + 10**9))
    (timer,) = of(effects, ScheduleTimer)
    assert inv not in h.machine.invocations, "a delayed invocation is not held in memory"
    # Attach, an idempotent duplicate and the timer: all from what was preloaded.
    h.step(Attach(inv, 3, wait=False))
    h.now = timer.key.wake_at
    (start,) = of(h.step(TimerFired(timer.key)), StartAttempt)
    assert start.invocation_id == inv and h.store.statuses[inv].status is Status.INVOKED
    obj = h.invoke(COUNTER_ADD)
    get = pb.GetLazyStateCommandMessage(key=b"n", result_completion_id=1)
    h.append(obj, 1, MessageType.GET_LAZY_STATE_COMMAND, get)
    assert h.loader.reads == 0
