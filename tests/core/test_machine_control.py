"""Operators' control of invocations (cancel, kill, purge, pause, resume) and of state."""

from __future__ import annotations

from test_machine import COUNTER_ADD, GREET, Harness, of
from test_machine_workflows import RUN

from pyrestate.core.commands import (
    AppendCommand,
    AttemptFailed,
    Control,
    ControlAction,
    ControlOutcome,
    Invoke,
    MutateState,
    RestartAsNew,
    RetryPolicy,
)
from pyrestate.core.effects import AbortAttempt, Completed, Notify, Reply, StartAttempt
from pyrestate.core.ids import InvocationId
from pyrestate.core.machine import state_version
from pyrestate.core.model import CallerRef, Failure, JournalEntry, Output, Status
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType

CANCELLED = Output(failure=Failure(409, "cancelled"))
KILLED = Output(failure=Failure(409, "killed"))


def _control(h: Harness, inv: InvocationId, action: ControlAction) -> tuple[str, list[object]]:
    effects = h.step(Control(inv, action, reply=77))
    (reply,) = [r for r in of(effects, Reply) if r.token == 77]
    assert reply.outcome is not None
    return reply.outcome, effects


def test_cancel_tells_a_running_handler_and_ends_one_not_started() -> None:
    h = Harness()
    holder = h.invoke(COUNTER_ADD)
    queued = h.invoke(COUNTER_ADD)
    assert h.store.statuses[queued].status is Status.INBOXED
    outcome, effects = _control(h, holder, ControlAction.CANCEL)
    assert outcome == ControlOutcome.APPENDED
    (note,) = of(effects, Notify)
    parsed = pb.NotificationTemplate.FromString(note.entry.body)
    assert note.entry.type == MessageType.SIGNAL_NOTIFICATION and parsed.signal_id == 1
    # Inboxed: ends at once, and the key's holder keeps its lock.
    outcome, effects = _control(h, queued, ControlAction.CANCEL)
    assert outcome == ControlOutcome.DONE
    assert of(effects, Completed) == [Completed(queued, CANCELLED)]
    assert of(effects, StartAttempt) == []
    assert h.machine.objects[("Counter", "k")].holder == holder
    h.finish(holder, 1)
    assert _control(h, holder, ControlAction.CANCEL)[0] == ControlOutcome.COMPLETED
    assert _control(h, h.new_id(), ControlAction.CANCEL)[0] == ControlOutcome.NOT_FOUND


def test_kill_ends_an_invocation_and_the_calls_it_waits_for() -> None:
    h = Harness()
    caller = h.invoke(COUNTER_ADD)
    waiting = h.invoke(COUNTER_ADD)  # inboxed behind the caller
    callee = h.new_id()
    call = pb.CallCommandMessage(
        service_name="Greeter",
        handler_name="greet",
        invocation_id_notification_idx=1,
        result_completion_id=2,
    )
    entry = JournalEntry(MessageType.CALL_COMMAND, call.SerializeToString())
    invoke = Invoke(callee, GREET, b"", caller=CallerRef(caller, 2))
    h.step(AppendCommand(caller, 1, "dp", entry, call, callee=invoke))
    outcome, effects = _control(h, caller, ControlAction.KILL)
    assert outcome == ControlOutcome.DONE
    assert {c.invocation_id: c.output for c in of(effects, Completed)} == {
        caller: KILLED,
        callee: KILLED,
    }
    assert {a.invocation_id for a in of(effects, AbortAttempt)} == {caller, callee}
    # The key is free: the next in its inbox starts.
    assert [s.invocation_id for s in of(effects, StartAttempt)] == [waiting]


def test_purge_forgets_only_completed_invocations() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    assert _control(h, inv, ControlAction.PURGE)[0] == ControlOutcome.NOT_COMPLETED
    h.finish(inv, 1)
    assert _control(h, inv, ControlAction.PURGE_JOURNAL)[0] == ControlOutcome.DONE
    assert not [k for k in h.store.journal if k[0] == inv]
    assert h.store.statuses[inv].output == Output(value=b"out")  # the record stays
    assert _control(h, inv, ControlAction.PURGE)[0] == ControlOutcome.DONE
    assert inv not in h.store.statuses
    assert _control(h, inv, ControlAction.PURGE)[0] == ControlOutcome.NOT_FOUND


def test_pause_and_resume() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    h.step(AttemptFailed(inv, 1, "dp", Failure(500, "boom"), RetryPolicy()))
    assert h.store.statuses[inv].status is Status.BACKING_OFF
    assert _control(h, inv, ControlAction.PAUSE)[0] == ControlOutcome.DONE
    assert h.store.statuses[inv].status is Status.PAUSED
    assert _control(h, inv, ControlAction.PAUSE)[0] == ControlOutcome.ALREADY
    outcome, effects = _control(h, inv, ControlAction.RESUME)
    assert outcome == ControlOutcome.DONE
    assert [s.attempt for s in of(effects, StartAttempt)] == [2]
    # Pausing a running attempt stops it.
    outcome, effects = _control(h, inv, ControlAction.PAUSE)
    assert [a.attempt for a in of(effects, AbortAttempt)] == [2]
    assert h.store.statuses[inv].status is Status.PAUSED


def _set_count(h: Harness, inv: InvocationId, value: bytes) -> None:
    msg = pb.SetStateCommandMessage(key=b"count")
    msg.value.content = value
    entry = JournalEntry(MessageType.SET_STATE_COMMAND, msg.SerializeToString())
    h.step(AppendCommand(inv, 1, "dp", entry, msg))


def test_a_state_mutation_waits_for_its_key_and_checks_its_version() -> None:
    h = Harness()
    ref = ("Counter", "k")
    # A free key: applied at once, replacing the whole state.
    h.store.kv[ref] = {b"count": b"1", b"old": b"x"}
    h.step(MutateState("Counter", "k", ((b"count", b"5"),), reply=1))
    assert h.store.kv[ref] == {b"count": b"5"}
    # A busy key: it waits, in order with the invocations queued there.
    holder = h.invoke(COUNTER_ADD)
    h.step(MutateState("Counter", "k", ((b"count", b"9"),)))
    queued = h.invoke(COUNTER_ADD)
    assert h.store.kv[ref] == {b"count": b"5"} and len(h.store.mutations) == 1
    # Memory rebuilt from storage keeps the order (as after a crash).
    h.machine.reload(h.store.active_invocations(), h.now, list(h.store.mutations.values()))
    _set_count(h, holder, b"6")
    effects = h.finish(holder, 1)
    assert h.store.kv[ref] == {b"count": b"9"} and not h.store.mutations
    assert [s.invocation_id for s in of(effects, StartAttempt)] == [queued]
    # Computed from a state that changed since: dropped.
    h.finish(queued, 1)
    stale = state_version({b"count": b"5"})
    h.step(MutateState("Counter", "k", (), version=stale))
    assert h.store.kv[ref] == {b"count": b"9"}
    h.step(MutateState("Counter", "k", (), version=state_version({b"count": b"9"})))
    assert not h.store.kv.get(ref)


def test_restart_as_new_runs_a_completed_invocation_again_from_its_input() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    uuid = bytes(range(16))

    def restart(target: InvocationId) -> Reply:
        (reply,) = of(h.step(RestartAsNew(target, uuid, reply=5)), Reply)
        return reply

    assert restart(inv).outcome == ControlOutcome.STILL_RUNNING
    h.finish(inv, 1)
    reply = restart(inv)
    assert reply.outcome == ControlOutcome.DONE and reply.invocation_id is not None
    new = reply.invocation_id
    assert (new.partition_key, new.uuid) == (inv.partition_key, uuid)
    started = h.store.statuses[new]
    assert started.status is Status.INVOKED and started.target == GREET
    assert h.store.journal[(new, 0)] == h.store.journal[(inv, 0)]  # the same input
    assert restart(h.new_id()).outcome == ControlOutcome.NOT_FOUND
    h.step(Control(inv, ControlAction.PURGE_JOURNAL))
    assert restart(inv).outcome == ControlOutcome.MISSING_INPUT


def test_a_workflow_is_not_restarted() -> None:
    h = Harness()
    run = h.invoke(RUN)
    h.finish(run, 1)
    (reply,) = of(h.step(RestartAsNew(run, bytes(16), reply=5)), Reply)
    assert reply.outcome == ControlOutcome.UNSUPPORTED
