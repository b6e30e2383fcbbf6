"""Frame codec of the service protocol: an 8-byte header (type, flags, length) then a protobuf body.

Pure: bytes in, frames out. No sockets, no asyncio.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from google.protobuf.message import Message

from pyrestate.protocol import service_protocol_pb2 as pb

_HEADER = struct.Struct(">HHI")
HEADER_SIZE = _HEADER.size
REQUIRES_ACK_FLAG = 0x8000
# Frames larger than this are a protocol violation, not something to buffer.
DEFAULT_MAX_FRAME_SIZE = 32 * 1024 * 1024


class MessageType(IntEnum):
    START = 0x0000
    SUSPENSION = 0x0001
    ERROR = 0x0002
    END = 0x0003
    COMMAND_ACK = 0x0004
    PROPOSE_RUN_COMPLETION = 0x0005
    AWAITING_ON = 0x0006
    PROPOSE_RUN_COMPLETION_ACK = 0x0007

    INPUT_COMMAND = 0x0400
    OUTPUT_COMMAND = 0x0401
    GET_LAZY_STATE_COMMAND = 0x0402
    SET_STATE_COMMAND = 0x0403
    CLEAR_STATE_COMMAND = 0x0404
    CLEAR_ALL_STATE_COMMAND = 0x0405
    GET_LAZY_STATE_KEYS_COMMAND = 0x0406
    GET_EAGER_STATE_COMMAND = 0x0407
    GET_EAGER_STATE_KEYS_COMMAND = 0x0408
    GET_PROMISE_COMMAND = 0x0409
    PEEK_PROMISE_COMMAND = 0x040A
    COMPLETE_PROMISE_COMMAND = 0x040B
    SLEEP_COMMAND = 0x040C
    CALL_COMMAND = 0x040D
    ONE_WAY_CALL_COMMAND = 0x040E
    SEND_SIGNAL_COMMAND = 0x0410
    RUN_COMMAND = 0x0411
    ATTACH_INVOCATION_COMMAND = 0x0412
    GET_INVOCATION_OUTPUT_COMMAND = 0x0413
    COMPLETE_AWAKEABLE_COMMAND = 0x0414

    GET_LAZY_STATE_COMPLETION = 0x8002
    GET_LAZY_STATE_KEYS_COMPLETION = 0x8006
    GET_PROMISE_COMPLETION = 0x8009
    PEEK_PROMISE_COMPLETION = 0x800A
    COMPLETE_PROMISE_COMPLETION = 0x800B
    SLEEP_COMPLETION = 0x800C
    CALL_COMPLETION = 0x800D
    CALL_INVOCATION_ID_COMPLETION = 0x800E
    RUN_COMPLETION = 0x8011
    ATTACH_INVOCATION_COMPLETION = 0x8012
    GET_INVOCATION_OUTPUT_COMPLETION = 0x8013
    SIGNAL_NOTIFICATION = 0xFBFF


COMMAND_RANGE = range(0x0400, 0x8000)
NOTIFICATION_RANGE = range(0x8000, 0xFC00)
CUSTOM_RANGE = range(0xFC00, 0x10000)

# Messages the runtime decodes. Notifications all share NotificationTemplate's layout.
MESSAGE_CLASSES: dict[int, type[Message]] = {
    MessageType.START: pb.StartMessage,
    MessageType.SUSPENSION: pb.SuspensionMessage,
    MessageType.ERROR: pb.ErrorMessage,
    MessageType.END: pb.EndMessage,
    MessageType.COMMAND_ACK: pb.CommandAckMessage,
    MessageType.PROPOSE_RUN_COMPLETION: pb.ProposeRunCompletionMessage,
    MessageType.AWAITING_ON: pb.AwaitingOnMessage,
    MessageType.PROPOSE_RUN_COMPLETION_ACK: pb.ProposeRunCompletionAckMessage,
    MessageType.INPUT_COMMAND: pb.InputCommandMessage,
    MessageType.OUTPUT_COMMAND: pb.OutputCommandMessage,
    MessageType.GET_LAZY_STATE_COMMAND: pb.GetLazyStateCommandMessage,
    MessageType.SET_STATE_COMMAND: pb.SetStateCommandMessage,
    MessageType.CLEAR_STATE_COMMAND: pb.ClearStateCommandMessage,
    MessageType.CLEAR_ALL_STATE_COMMAND: pb.ClearAllStateCommandMessage,
    MessageType.GET_LAZY_STATE_KEYS_COMMAND: pb.GetLazyStateKeysCommandMessage,
    MessageType.GET_EAGER_STATE_COMMAND: pb.GetEagerStateCommandMessage,
    MessageType.GET_EAGER_STATE_KEYS_COMMAND: pb.GetEagerStateKeysCommandMessage,
    MessageType.GET_PROMISE_COMMAND: pb.GetPromiseCommandMessage,
    MessageType.PEEK_PROMISE_COMMAND: pb.PeekPromiseCommandMessage,
    MessageType.COMPLETE_PROMISE_COMMAND: pb.CompletePromiseCommandMessage,
    MessageType.SLEEP_COMMAND: pb.SleepCommandMessage,
    MessageType.CALL_COMMAND: pb.CallCommandMessage,
    MessageType.ONE_WAY_CALL_COMMAND: pb.OneWayCallCommandMessage,
    MessageType.SEND_SIGNAL_COMMAND: pb.SendSignalCommandMessage,
    MessageType.RUN_COMMAND: pb.RunCommandMessage,
    MessageType.ATTACH_INVOCATION_COMMAND: pb.AttachInvocationCommandMessage,
    MessageType.GET_INVOCATION_OUTPUT_COMMAND: pb.GetInvocationOutputCommandMessage,
    MessageType.COMPLETE_AWAKEABLE_COMMAND: pb.CompleteAwakeableCommandMessage,
}


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid frame sequence."""


@dataclass(slots=True)
class Frame:
    type: int
    flags: int
    body: bytes

    @property
    def requires_ack(self) -> bool:
        return bool(self.flags & REQUIRES_ACK_FLAG)

    def is_command(self) -> bool:
        return self.type in COMMAND_RANGE or self.type in CUSTOM_RANGE

    def is_notification(self) -> bool:
        return self.type in NOTIFICATION_RANGE

    def decode(self) -> Message:
        """Parse the body with the message class of this frame's type."""
        if self.is_notification():
            cls: type[Message] = pb.NotificationTemplate
        else:
            found = MESSAGE_CLASSES.get(self.type)
            if found is None:
                raise ProtocolError(f"unknown message type 0x{self.type:04x}")
            cls = found
        msg = cls()
        try:
            msg.ParseFromString(self.body)
        except Exception as e:  # protobuf raises DecodeError, but also others on garbage
            raise ProtocolError(f"cannot decode message type 0x{self.type:04x}: {e}") from e
        return msg


def encode_frame(msg_type: int, body: bytes, flags: int = 0) -> bytes:
    return _HEADER.pack(msg_type, flags, len(body)) + body


def encode_message(msg_type: int, msg: Message, flags: int = 0) -> bytes:
    return encode_frame(msg_type, msg.SerializeToString(), flags)


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, take whole frames out."""

    __slots__ = ("_buf", "_max")

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_frame_size

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        frames: list[Frame] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            msg_type, flags, length = _HEADER.unpack_from(buf, pos)
            if length > self._max:
                raise ProtocolError(f"frame of {length} bytes exceeds limit {self._max}")
            if end - pos - HEADER_SIZE < length:
                break
            start = pos + HEADER_SIZE
            frames.append(Frame(msg_type, flags, bytes(buf[start : start + length])))
            pos = start + length
        if pos:
            del buf[:pos]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buf)
