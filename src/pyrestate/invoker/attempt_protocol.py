"""The runtime side of one invocation attempt, sans-IO: frames to send, events from bytes."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import Message

from pyrestate.core.limits import OutOfRange, duration_ms
from pyrestate.core.model import JournalEntry
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import (
    CUSTOM_RANGE,
    FrameDecoder,
    MessageType,
    ProtocolError,
    encode_frame,
    encode_message,
)

# ErrorMessage codes the SDKs use for their own protocol troubles.
JOURNAL_MISMATCH = 570
PROTOCOL_VIOLATION = 571


@dataclass(frozen=True, slots=True)
class NewCommand:
    entry: JournalEntry
    message: Message | None  # None for custom commands, stored opaque
    requires_ack: bool


@dataclass(frozen=True, slots=True)
class RunProposal:
    completion_id: int
    entry: JournalEntry  # the RunCompletion notification to store


@dataclass(frozen=True, slots=True)
class Suspended:
    completions: frozenset[int]
    signals: frozenset[int | str]


@dataclass(frozen=True, slots=True)
class Errored:
    code: int
    message: str
    related: str | None
    next_retry_delay_ms: int | None
    fail: bool  # the SDK asked not to retry
    pause: bool = False  # the SDK asked to pause the invocation


@dataclass(frozen=True, slots=True)
class Ended:
    pass


Event = NewCommand | RunProposal | Suspended | Errored | Ended


def content_type(version: int) -> str:
    return f"application/vnd.restate.invocation.v{version}"


def start_frames(
    *,
    version: int,
    invocation_id: bytes,
    debug_id: str,
    key: str | None,
    journal: Iterable[JournalEntry],
    known_entries: int,
    state: dict[bytes, bytes] | None,
    retry_count: int,
    since_last_entry_ms: int,
    random_seed: int,
) -> bytes:
    start = pb.StartMessage(
        id=invocation_id,
        debug_id=debug_id,
        known_entries=known_entries,
        key=key or "",
        partial_state=state is None,
        retry_count_since_last_stored_entry=retry_count,
        duration_since_last_stored_entry=since_last_entry_ms,
    )
    if version >= 6:
        start.random_seed = random_seed
    if state:
        start.state_map.extend(pb.StartMessage.StateEntry(key=k, value=v) for k, v in state.items())
    parts = [encode_message(MessageType.START, start)]
    parts.extend(encode_frame(e.type, e.body) for e in journal)
    return b"".join(parts)


def notification_frame(entry: JournalEntry) -> bytes:
    return encode_frame(entry.type, entry.body)


def ack_frame(command_index: int) -> bytes:
    return encode_message(
        MessageType.COMMAND_ACK, pb.CommandAckMessage(command_index=command_index)
    )


class AttemptProtocol:
    """Decodes what the SDK sends during one attempt into events.

    Raises ``ProtocolError`` on anything a well-behaved SDK does not send.
    """

    __slots__ = ("_decoder", "done")

    def __init__(self, max_frame_size: int | None = None) -> None:
        self._decoder = FrameDecoder() if max_frame_size is None else FrameDecoder(max_frame_size)
        self.done = False

    def feed(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        for frame in self._decoder.feed(data):
            if self.done:
                raise ProtocolError(f"message 0x{frame.type:04x} after the end of the attempt")
            t = frame.type
            if frame.is_command():
                msg = None if t in CUSTOM_RANGE else frame.decode()
                events.append(NewCommand(JournalEntry(t, frame.body), msg, frame.requires_ack))
                continue
            if t == MessageType.PROPOSE_RUN_COMPLETION:
                events.append(_run_proposal(frame.decode()))  # type: ignore[arg-type]
            elif t == MessageType.SUSPENSION:
                events.append(_suspension(frame.decode()))  # type: ignore[arg-type]
                self.done = True
            elif t == MessageType.ERROR:
                events.append(_error(frame.decode()))  # type: ignore[arg-type]
                self.done = True
            elif t == MessageType.END:
                frame.decode()  # an End with a body that does not parse is no clean end
                events.append(Ended())
                self.done = True
            elif t == MessageType.AWAITING_ON:
                frame.decode()  # a hint only; still must be well formed
            else:
                raise ProtocolError(f"unexpected message type 0x{t:04x} from the deployment")
        return events


def _run_proposal(msg: pb.ProposeRunCompletionMessage) -> RunProposal:
    which = msg.WhichOneof("result")
    if which is None:
        raise ProtocolError("ProposeRunCompletion without a result")
    note = pb.NotificationTemplate(completion_id=msg.result_completion_id)
    if which == "value":
        note.value.content = msg.value
    else:
        note.failure.CopyFrom(msg.failure)
    entry = JournalEntry(MessageType.RUN_COMPLETION, note.SerializeToString())
    return RunProposal(msg.result_completion_id, entry)


def _suspension(msg: pb.SuspensionMessage) -> Suspended:
    completions = set(msg.waiting_completions)
    signals: set[int | str] = set(msg.waiting_signals)
    signals.update(msg.waiting_named_signals)
    if msg.HasField("awaiting_on"):
        _flatten(msg.awaiting_on, completions, signals)
    if not completions and not signals:
        raise ProtocolError("suspension without anything to wait for")
    return Suspended(frozenset(completions), frozenset(signals))


def _flatten(fut: pb.Future, completions: set[int], signals: set[int | str]) -> None:
    completions.update(fut.waiting_completions)
    signals.update(fut.waiting_signals)
    signals.update(fut.waiting_named_signals)
    for nested in fut.nested_futures:
        _flatten(nested, completions, signals)


def _error(msg: pb.ErrorMessage) -> Errored:
    # JSON, so introspection can show index, name and type in their own columns; always
    # present ({} when the SDK named no command): it marks the failure as the handler's.
    fields: dict[str, int | str] = {}
    if msg.HasField("related_command_index"):
        fields["index"] = msg.related_command_index
    if msg.related_command_name:
        fields["name"] = msg.related_command_name
    if msg.HasField("related_command_type"):
        fields["type"] = msg.related_command_type
    related = json.dumps(fields)
    text = msg.message
    if msg.stacktrace:
        text = f"{text}\n{msg.stacktrace}"
    delay = None
    if msg.HasField("next_retry_delay"):
        try:
            delay = duration_ms("ErrorMessage.next_retry_delay", msg.next_retry_delay)
        except OutOfRange as e:
            raise ProtocolError(str(e)) from None
    return Errored(
        code=msg.code or 500,
        message=text,
        related=related,
        next_retry_delay_ms=delay,
        fail=msg.behavior == pb.FAIL,
        pause=msg.behavior == pb.PAUSE,
    )
