"""The runtime side of one attempt: start frames out, events in."""

from __future__ import annotations

import pytest

from pyrestate.core.model import JournalEntry
from pyrestate.invoker import attempt_protocol as ap
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import FrameDecoder, MessageType, ProtocolError, encode_message


def test_start_frames_carry_state_journal_and_seed_by_version() -> None:
    entry = JournalEntry(MessageType.INPUT_COMMAND, pb.InputCommandMessage().SerializeToString())
    for version, seeded in ((5, False), (6, True)):
        wire = ap.start_frames(
            version=version,
            invocation_id=b"i" * 24,
            debug_id="inv_1abc",
            key="k",
            journal=[entry],
            known_entries=1,
            state={b"a": b"1"},
            retry_count=2,
            since_last_entry_ms=0,
            random_seed=99,
        )
        start_frame, input_frame = FrameDecoder().feed(wire)
        start = start_frame.decode()
        assert isinstance(start, pb.StartMessage)
        assert start.known_entries == 1 and start.key == "k" and not start.partial_state
        assert [(e.key, e.value) for e in start.state_map] == [(b"a", b"1")]
        assert start.retry_count_since_last_stored_entry == 2
        assert start.random_seed == (99 if seeded else 0)
        assert input_frame.type == MessageType.INPUT_COMMAND


def test_events_from_a_typical_attempt() -> None:
    proto = ap.AttemptProtocol()
    run = pb.RunCommandMessage(result_completion_id=1, name="pay")
    proposal = pb.ProposeRunCompletionMessage(result_completion_id=1, value=b"ok")
    out = pb.OutputCommandMessage()
    out.value.content = b"done"
    wire = (
        encode_message(MessageType.RUN_COMMAND, run)
        + encode_message(MessageType.PROPOSE_RUN_COMPLETION, proposal)
        + encode_message(MessageType.OUTPUT_COMMAND, out)
        + encode_message(MessageType.END, pb.EndMessage())
    )
    events = proto.feed(wire)
    assert [type(e) for e in events] == [ap.NewCommand, ap.RunProposal, ap.NewCommand, ap.Ended]
    note = pb.NotificationTemplate.FromString(events[1].entry.body)  # type: ignore[union-attr]
    assert events[1].entry.type == MessageType.RUN_COMPLETION  # type: ignore[union-attr]
    assert note.completion_id == 1 and note.value.content == b"ok"
    with pytest.raises(ProtocolError, match="after the end"):
        proto.feed(encode_message(MessageType.END, pb.EndMessage()))


def test_suspension_v6_and_v7_forms_and_error() -> None:
    v6 = pb.SuspensionMessage(waiting_completions=[1, 2], waiting_signals=[17])
    (ev,) = ap.AttemptProtocol().feed(encode_message(MessageType.SUSPENSION, v6))
    assert ev == ap.Suspended(frozenset({1, 2}), frozenset({17}))
    v7 = pb.SuspensionMessage()
    v7.awaiting_on.waiting_completions.append(3)
    v7.awaiting_on.nested_futures.add(waiting_named_signals=["n"])
    (ev,) = ap.AttemptProtocol().feed(encode_message(MessageType.SUSPENSION, v7))
    assert ev == ap.Suspended(frozenset({3}), frozenset({"n"}))
    with pytest.raises(ProtocolError, match="without anything to wait"):
        ap.AttemptProtocol().feed(encode_message(MessageType.SUSPENSION, pb.SuspensionMessage()))
    err = pb.ErrorMessage(code=500, message="boom", related_command_index=3, next_retry_delay=10)
    (ev,) = ap.AttemptProtocol().feed(encode_message(MessageType.ERROR, err))
    assert isinstance(ev, ap.Errored)
    assert ev.code == 500 and ev.next_retry_delay_ms == 10 and ev.related == '{"index": 3}'


def test_messages_an_sdk_must_not_send() -> None:
    note = pb.NotificationTemplate(completion_id=1)
    with pytest.raises(ProtocolError, match="unexpected message"):
        ap.AttemptProtocol().feed(encode_message(MessageType.SLEEP_COMPLETION, note))
    with pytest.raises(ProtocolError):
        ap.AttemptProtocol().feed(b"\x04\x11\x00\x00\x00\x00\x00\x02\xff\xff")
