"""State transitions of the partition machine, driven command by command."""

from __future__ import annotations

from pyrestate.core.changes import Changes
from pyrestate.core.commands import (
    AppendCommand,
    Attach,
    AttemptEnded,
    AttemptFailed,
    DeliverNotification,
    Invoke,
    ProposeRunCompletion,
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
    ServiceType,
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
    """Committed storage as plain dicts: what the SQLite store does, minus the disk."""

    def __init__(self) -> None:
        self.statuses: dict[InvocationId, InvocationStatus] = {}
        self.kv: dict[tuple[str, str], dict[bytes, bytes]] = {}
        self.journal: dict[tuple[InvocationId, int], JournalEntry] = {}

    def invocation(self, invocation_id: InvocationId) -> InvocationStatus | None:
        return self.statuses.get(invocation_id)

    def state(self, service: str, key: str) -> dict[bytes, bytes]:
        return dict(self.kv.get((service, key), {}))

    def commit(self, c: Changes) -> None:
        for inv in c.purged:
            self.statuses.pop(inv, None)
        self.statuses.update(c.statuses)
        for inv, idx, entry in c.journal:
            self.journal[(inv, idx)] = entry
        for op in c.state:
            obj = self.kv.setdefault((op.service, op.key), {})
            if op.name is None:
                obj.clear()
            elif op.value is None:
                obj.pop(op.name, None)
            else:
                obj[op.name] = op.value


class Harness:
    def __init__(self) -> None:
        self.store = MemoryStore()
        self.machine = PartitionMachine(self.store)
        self.now = 1_000_000
        self._n = 0

    def new_id(self, pk: int = 7) -> InvocationId:
        self._n += 1
        return InvocationId(pk, self._n.to_bytes(16, "big"))

    def step(self, *commands: object) -> list[object]:
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
    return TimerKey(st.next_retry_at or 0, inv.to_bytes(), kind, st.attempt)


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
    assert st.status is Status.PAUSED and st.retry_count == 4
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
    assert reply == Reply(2, first, pending=True)
    assert h.store.statuses[first].attempt == 1  # not started twice
    h.finish(first, 1, b"done")
    (reply,) = of(h.step(Invoke(first, GREET, b"", idempotency_key="abc", reply=3)), Reply)
    assert reply == Reply(3, first, Output(value=b"done"))


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
