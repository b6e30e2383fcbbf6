"""Workflows, durable promises and handlers reading other invocations' results."""

from __future__ import annotations

from google.protobuf.message import Message
from test_machine import GREET, Harness, of

from pyrestate.core.commands import AppendCommand, Invoke, Retention
from pyrestate.core.effects import Notify, Reply, StartAttempt
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import (
    CallerRef,
    Failure,
    HandlerType,
    JournalEntry,
    Output,
    ServiceType,
    Target,
)
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType

RUN = Target("Signup", "run", "u1", ServiceType.WORKFLOW, HandlerType.WORKFLOW)
CLICK = Target("Signup", "click", "u1", ServiceType.WORKFLOW, HandlerType.SHARED)


def _command(h: Harness, inv: InvocationId, t: int, msg: Message, **kw: object) -> list[object]:
    entry = JournalEntry(t, msg.SerializeToString())
    return h.step(AppendCommand(inv, 1, "dp", entry, msg, **kw))  # type: ignore[arg-type]


def _notes(effects: list[object], inv: InvocationId) -> list[tuple[int, pb.NotificationTemplate]]:
    return [
        (n.entry.type, pb.NotificationTemplate.FromString(n.entry.body))
        for n in of(effects, Notify)
        if n.invocation_id == inv
    ]


def _get(name: str, cid: int) -> pb.GetPromiseCommandMessage:
    return pb.GetPromiseCommandMessage(key=name, result_completion_id=cid)


def _resolve(name: str, value: bytes, cid: int) -> pb.CompletePromiseCommandMessage:
    msg = pb.CompletePromiseCommandMessage(key=name, result_completion_id=cid)
    msg.completion_value.content = value
    return msg


def test_a_workflow_runs_once_per_key() -> None:
    h = Harness()
    run = h.new_id()
    h.step(Invoke(run, RUN, b"", reply=1))
    (again,) = of(h.step(Invoke(run, RUN, b"", reply=2)), Reply)
    already = Output(failure=Failure(409, "the workflow method was already invoked"))
    assert again == Reply(2, run, already, previously=True)
    assert h.store.statuses[run].attempt == 1  # never started twice
    h.finish(run, 1, b'"done"')
    (after,) = of(h.step(Invoke(run, RUN, b"", reply=3)), Reply)
    assert after.output == already and after.previously
    # A handler calling the run again gets the same failure as its call's result.
    caller = h.invoke(GREET)
    effects = h.step(Invoke(run, RUN, b"", caller=CallerRef(caller, 4)))
    ((kind, note),) = _notes(effects, caller)
    assert kind == MessageType.CALL_COMPLETION and note.failure.code == 409


def test_a_promise_wakes_the_run_that_awaits_it_and_is_completed_once() -> None:
    h = Harness()
    run = h.invoke(RUN)
    assert _notes(_command(h, run, MessageType.GET_PROMISE_COMMAND, _get("link", 1)), run) == []
    click = h.invoke(CLICK)
    effects = _command(h, click, MessageType.COMPLETE_PROMISE_COMMAND, _resolve("link", b"1", 1))
    ((kind, note),) = _notes(effects, run)
    assert kind == MessageType.GET_PROMISE_COMPLETION
    assert (note.completion_id, note.value.content) == (1, b"1")
    ((kind, mine),) = _notes(effects, click)
    assert kind == MessageType.COMPLETE_PROMISE_COMPLETION and mine.HasField("void")
    # A second completion fails as the official answers, and changes nothing.
    effects = _command(h, click, MessageType.COMPLETE_PROMISE_COMMAND, _resolve("link", b"2", 2))
    ((_, second),) = _notes(effects, click)
    assert (second.failure.code, second.failure.message) == (409, "promise was already completed")
    peek = pb.PeekPromiseCommandMessage(key="link", result_completion_id=3)
    ((kind, peeked),) = _notes(_command(h, click, MessageType.PEEK_PROMISE_COMMAND, peek), click)
    assert kind == MessageType.PEEK_PROMISE_COMPLETION and peeked.value.content == b"1"


def test_a_promise_completed_before_it_is_awaited_answers_at_once() -> None:
    h = Harness()
    click = h.invoke(CLICK)
    peek = pb.PeekPromiseCommandMessage(key="link", result_completion_id=1)
    ((_, empty),) = _notes(_command(h, click, MessageType.PEEK_PROMISE_COMMAND, peek), click)
    assert empty.HasField("void")  # not completed yet
    _command(h, click, MessageType.COMPLETE_PROMISE_COMMAND, _resolve("link", b"v", 2))
    run = h.invoke(RUN)
    ((_, note),) = _notes(_command(h, run, MessageType.GET_PROMISE_COMMAND, _get("link", 1)), run)
    assert note.value.content == b"v"


def test_a_waiting_promise_survives_a_restart_from_storage() -> None:
    h = Harness()
    run = h.invoke(RUN)
    _command(h, run, MessageType.GET_PROMISE_COMMAND, _get("link", 1))
    # Memory rebuilt from what was committed, as after a crash.
    h.machine.reload(h.store.active_invocations(), h.now)
    click = h.invoke(CLICK)
    effects = _command(h, click, MessageType.COMPLETE_PROMISE_COMMAND, _resolve("link", b"1", 1))
    assert [kind for kind, _ in _notes(effects, run)] == [MessageType.GET_PROMISE_COMPLETION]


def test_a_workflow_without_retention_leaves_no_state_or_promises() -> None:
    h = Harness()
    run = h.new_id()
    h.step(Invoke(run, RUN, b"", retention=Retention(0, 0)))
    set_state = pb.SetStateCommandMessage(key=b"status")
    set_state.value.content = b'"ok"'
    _command(h, run, MessageType.SET_STATE_COMMAND, set_state)
    _command(h, run, MessageType.COMPLETE_PROMISE_COMMAND, _resolve("p", b"1", 1))
    assert h.store.kv[("Signup", "u1")] and h.store.promises
    h.finish(run, 1)
    assert ("Signup", "u1") not in h.store.kv and not h.store.promises
    # Gone with its record: the same key runs again.
    effects = h.step(Invoke(run, RUN, b"", reply=9))
    assert [s.invocation_id for s in of(effects, StartAttempt)] == [run]


def _attach(cid: int) -> pb.AttachInvocationCommandMessage:
    return pb.AttachInvocationCommandMessage(invocation_id="x", result_completion_id=cid)


def _output(cid: int) -> pb.GetInvocationOutputCommandMessage:
    return pb.GetInvocationOutputCommandMessage(invocation_id="x", result_completion_id=cid)


def test_handlers_attach_to_and_read_the_output_of_other_invocations() -> None:
    h = Harness()
    subject = h.invoke(GREET)
    reader = h.invoke(GREET)
    attach, output = (
        MessageType.ATTACH_INVOCATION_COMMAND,
        MessageType.GET_INVOCATION_OUTPUT_COMMAND,
    )
    ((_, not_ready),) = _notes(_command(h, reader, output, _output(1), subject=subject), reader)
    assert not_ready.HasField("void")
    assert _notes(_command(h, reader, attach, _attach(2), subject=subject), reader) == []
    ((kind, attached),) = _notes(h.finish(subject, 1, b"42"), reader)
    assert kind == MessageType.ATTACH_INVOCATION_COMPLETION
    assert (attached.completion_id, attached.value.content) == (2, b"42")
    ((_, done),) = _notes(_command(h, reader, output, _output(3), subject=subject), reader)
    assert done.value.content == b"42"
    unknown = h.new_id()
    ((_, missing),) = _notes(_command(h, reader, attach, _attach(4), subject=unknown), reader)
    assert (missing.failure.code, missing.failure.message) == (404, "not found")
