"""Frame header codec: round trips, incremental decoding, and garbage."""

from __future__ import annotations

import pytest

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import (
    REQUIRES_ACK_FLAG,
    FrameDecoder,
    MessageType,
    ProtocolError,
    encode_frame,
    encode_message,
)


def test_header_layout_is_type_flags_length_big_endian() -> None:
    raw = encode_frame(0x0403, b"abc", REQUIRES_ACK_FLAG)
    assert raw == bytes([0x04, 0x03, 0x80, 0x00, 0, 0, 0, 3]) + b"abc"


def test_decoder_takes_frames_split_anywhere() -> None:
    start = pb.StartMessage(id=b"\x01" * 24, debug_id="inv_1x", known_entries=2)
    wire = encode_message(MessageType.START, start) + encode_frame(MessageType.END, b"")
    for cut in range(len(wire) + 1):
        decoder = FrameDecoder()
        frames = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert [f.type for f in frames] == [MessageType.START, MessageType.END]
        assert frames[0].decode() == start
        assert decoder.pending == 0


def test_flags_and_kinds() -> None:
    (frame,) = FrameDecoder().feed(encode_frame(MessageType.RUN_COMMAND, b"", REQUIRES_ACK_FLAG))
    assert frame.requires_ack and frame.is_command() and not frame.is_notification()
    (note,) = FrameDecoder().feed(encode_frame(MessageType.SLEEP_COMPLETION, b""))
    assert note.is_notification() and not note.requires_ack


def test_notifications_decode_with_the_shared_template() -> None:
    msg = pb.NotificationTemplate(completion_id=3)
    msg.value.content = b"v"
    (frame,) = FrameDecoder().feed(encode_message(MessageType.CALL_COMPLETION, msg))
    assert frame.decode() == msg


def test_oversized_frame_is_refused_before_buffering() -> None:
    decoder = FrameDecoder(max_frame_size=16)
    with pytest.raises(ProtocolError, match="exceeds"):
        decoder.feed(encode_frame(MessageType.END, b"x" * 17)[:8])


def test_garbage_body_and_unknown_type_are_protocol_errors() -> None:
    (frame,) = FrameDecoder().feed(encode_frame(MessageType.START, b"\xff\xff\xff"))
    with pytest.raises(ProtocolError):
        frame.decode()
    (frame,) = FrameDecoder().feed(encode_frame(0x0399, b""))
    with pytest.raises(ProtocolError, match="unknown message type"):
        frame.decode()
