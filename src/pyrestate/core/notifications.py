"""Builders of the notification entries the runtime appends to journals."""

from __future__ import annotations

from pyrestate.core.model import Failure, JournalEntry, Output
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType


def failure_of(msg: pb.Failure) -> Failure:
    """A protocol Failure, metadata included."""
    return Failure(msg.code, msg.message, tuple((m.key, m.value) for m in msg.metadata))


def failure_into(msg: pb.Failure, failure: Failure) -> None:
    msg.code = failure.code
    msg.message = failure.message
    for k, v in failure.metadata:
        msg.metadata.add(key=k, value=v)


def _result_into(msg: pb.NotificationTemplate, output: Output) -> None:
    if output.failure is not None:
        failure_into(msg.failure, output.failure)
    else:
        msg.value.content = output.value or b""


def completion(msg_type: int, completion_id: int, output: Output | None) -> JournalEntry:
    """A completion carrying a value, a failure, or (``output`` None) void."""
    msg = pb.NotificationTemplate(completion_id=completion_id)
    if output is None:
        msg.void.SetInParent()
    else:
        _result_into(msg, output)
    return JournalEntry(msg_type, msg.SerializeToString())


def invocation_id_completion(completion_id: int, invocation_id: str) -> JournalEntry:
    msg = pb.NotificationTemplate(completion_id=completion_id, invocation_id=invocation_id)
    return JournalEntry(MessageType.CALL_INVOCATION_ID_COMPLETION, msg.SerializeToString())


def state_keys_completion(completion_id: int, keys: list[bytes]) -> JournalEntry:
    msg = pb.NotificationTemplate(completion_id=completion_id)
    msg.state_keys.keys.extend(keys)
    return JournalEntry(MessageType.GET_LAZY_STATE_KEYS_COMPLETION, msg.SerializeToString())


def signal(signal_id: int | str, output: Output | None) -> JournalEntry:
    msg = pb.NotificationTemplate()
    if isinstance(signal_id, str):
        msg.signal_name = signal_id
    else:
        msg.signal_id = signal_id
    if output is None:
        msg.void.SetInParent()
    else:
        _result_into(msg, output)
    return JournalEntry(MessageType.SIGNAL_NOTIFICATION, msg.SerializeToString())


def input_entry(body: bytes, headers: tuple[tuple[str, str], ...]) -> JournalEntry:
    msg = pb.InputCommandMessage()
    msg.value.content = body
    for k, v in headers:
        msg.headers.add(key=k, value=v)
    return JournalEntry(MessageType.INPUT_COMMAND, msg.SerializeToString())


def output_of(msg: pb.OutputCommandMessage) -> Output:
    if msg.HasField("failure"):
        return Output(failure=failure_of(msg.failure))
    return Output(value=msg.value.content)
