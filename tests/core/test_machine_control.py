"""Operators' control of invocations (cancel, kill, purge, pause, resume) and of state."""

from __future__ import annotations

from test_machine import COUNTER_ADD, GREET, Harness, of
from test_machine_workflows import RUN

from pyrestate.core import notifications as notif
from pyrestate.core.commands import (
    AppendCommand,
    AttemptFailed,
    Control,
    ControlAction,
    ControlOutcome,
    DeploymentChoice,
    Invoke,
    MutateState,
    ProposeRunCompletion,
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


def _run_step(h: Harness, inv: InvocationId, cid: int) -> None:
    """A Run command and its completion (the SDK's ctx.run)."""
    h.append(inv, 1, MessageType.RUN_COMMAND, pb.RunCommandMessage(result_completion_id=cid))
    note = notif.completion(MessageType.RUN_COMPLETION, cid, Output(value=b"%d" % cid))
    h.step(ProposeRunCompletion(inv, 1, "dp", cid, note))


SPEAKS_6 = {"dp": (6, 5, 6), "dp-new": (6, 5, 6), "dp-7": (7, 7, 7)}


def test_restart_from_a_prefix_copies_its_commands_with_their_completions() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    _run_step(h, inv, 1)
    _run_step(h, inv, 2)
    h.finish(inv, 1)
    old = [h.store.journal[(inv, i)] for i in range(6)]

    def restart(upto: int, wanted: str = "keep", speaks: dict = SPEAKS_6) -> Reply:  # type: ignore[type-arg]
        choice = DeploymentChoice(wanted, {"Greeter": "dp-new"}, speaks)
        (reply,) = of(h.step(RestartAsNew(inv, h.new_id().uuid, 5, upto, choice)), Reply)
        return reply

    one = restart(1)  # the first Run command: its completion comes along
    assert one.outcome == ControlOutcome.DONE and one.invocation_id is not None
    new = h.store.statuses[one.invocation_id]
    assert [h.store.journal[(new.id, i)] for i in range(new.journal_length)] == old[:3]
    assert (new.command_count, new.completions_seen, new.deployment_id) == (2, {1}, "dp")
    both = restart(3, "latest")
    new = h.store.statuses[both.invocation_id]  # type: ignore[index]
    assert [h.store.journal[(new.id, i)] for i in range(new.journal_length)] == old[:5]
    assert new.deployment_id == "dp-new"
    assert restart(6).outcome == ControlOutcome.COPY_RANGE_INVALID  # past its end
    # Protocol 5 replays no prefix (its randomness differs); the input alone it can.
    old_protocol = {"dp": (5, 5, 5)}
    assert restart(1, speaks=old_protocol).outcome == ControlOutcome.UNSUPPORTED
    assert restart(0, speaks=old_protocol).outcome == ControlOutcome.DONE
    assert restart(1, "dp-gone").outcome == ControlOutcome.DEPLOYMENT_NOT_FOUND
    refused = restart(1, "dp-7")
    assert (refused.outcome, refused.pinned) == (
        ControlOutcome.INCOMPATIBLE_DEPLOYMENT,
        (6, "dp-7"),
    )


def test_resume_moves_a_paused_invocation_to_another_deployment() -> None:
    h = Harness()
    inv = h.invoke(GREET)
    _run_step(h, inv, 1)  # pins "dp"

    def resume(wanted: str) -> Reply:
        choice = DeploymentChoice(wanted, {"Greeter": "dp-new"}, SPEAKS_6)
        effects = h.step(Control(inv, ControlAction.RESUME, 9, choice))
        (reply,) = of(effects, Reply)
        return reply

    assert resume("dp-new").outcome == ControlOutcome.CANNOT_REPIN  # in the middle of an attempt
    assert _control(h, inv, ControlAction.PAUSE)[0] == ControlOutcome.DONE
    assert resume("dp-gone").outcome == ControlOutcome.DEPLOYMENT_NOT_FOUND
    assert resume("dp-7").pinned == (6, "dp-7")
    assert h.store.statuses[inv].status is Status.PAUSED
    choice = DeploymentChoice("latest", {"Greeter": "dp-new"}, SPEAKS_6)
    effects = h.step(Control(inv, ControlAction.RESUME, 9, choice))
    (start,) = of(effects, StartAttempt)
    assert start.deployment_id == "dp-new"
