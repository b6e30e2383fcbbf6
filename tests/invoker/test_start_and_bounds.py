"""What an attempt sends first (eager or lazy state) and what it refuses from the SDK."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrestate.core.changes import Changes, StateOp
from pyrestate.core.effects import StartAttempt
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import HandlerType, JournalEntry, ServiceType, Target
from pyrestate.invoker import attempt_protocol as ap
from pyrestate.invoker import service as service_module
from pyrestate.invoker.service import AttemptError, DeploymentInfo, Invoker, ServiceConfig
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import FrameDecoder, MessageType, ProtocolError
from pyrestate.storage.sqlite import SqlitePartitionStore

OBJ = Target("Obj", "run", "k", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE)
DEP = DeploymentInfo("dp_1", "http://127.0.0.1:1/", "HTTP/2.0", True, 6)


class Schemas:
    def target(self, service: str, handler: str, key: str | None) -> Target:
        return Target(service, handler, key, ServiceType.SERVICE, None)

    def service_config(self, service: str, handler: str) -> ServiceConfig:
        return ServiceConfig()

    def deployment_for(self, service: str, pinned: str | None) -> DeploymentInfo:
        return DEP


class Sink:
    def submit(self, command: object) -> None:
        pass


def _invoker(tmp_path: Path) -> Invoker:
    store = SqlitePartitionStore(tmp_path / "p.db")
    store.commit(Changes(state=[StateOp("Obj", "k", b"a", b"x" * 1000)]))
    return Invoker(Sink(), store, Schemas())


def _start(journal: tuple[JournalEntry, ...] | None = None) -> StartAttempt:
    inv = InvocationId(1, bytes(16))
    return StartAttempt(inv, 1, OBJ, 1, None, 0, 0, journal or (JournalEntry(0x0400, b""),))


def _start_message(frames: bytes) -> pb.StartMessage:
    first = next(iter(FrameDecoder().feed(frames)))
    assert first.type == MessageType.START
    return first.decode()  # type: ignore[return-value]


async def test_state_goes_eagerly_by_default(tmp_path: Path) -> None:
    start = _start_message(await _invoker(tmp_path)._start_frames(_start(), DEP, False))
    assert not start.partial_state and [e.key for e in start.state_map] == [b"a"]


async def test_a_lazy_state_service_gets_none_eagerly(tmp_path: Path) -> None:
    start = _start_message(await _invoker(tmp_path)._start_frames(_start(), DEP, True))
    assert start.partial_state and len(start.state_map) == 0


async def test_large_state_falls_back_to_lazy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "EAGER_STATE_LIMIT", 500)
    start = _start_message(await _invoker(tmp_path)._start_frames(_start(), DEP, False))
    assert start.partial_state and len(start.state_map) == 0


def _command(msg_type: int, msg: pb.Message) -> ap.NewCommand:  # type: ignore[name-defined]
    return ap.NewCommand(JournalEntry(msg_type, msg.SerializeToString()), msg, False)


@pytest.mark.parametrize(
    ("msg_type", "msg", "field"),
    [
        (
            MessageType.SLEEP_COMMAND,
            pb.SleepCommandMessage(wake_up_time=2**64 - 1, result_completion_id=1),
            "wake_up_time",
        ),
        (
            MessageType.ONE_WAY_CALL_COMMAND,
            pb.OneWayCallCommandMessage(service_name="S", handler_name="h", invoke_time=2**63),
            "invoke_time",
        ),
    ],
)
def test_out_of_range_times_from_the_sdk_fail_the_attempt(
    tmp_path: Path, msg_type: int, msg: object, field: str
) -> None:
    invoker = _invoker(tmp_path)
    with pytest.raises(AttemptError, match=field) as caught:
        invoker._validate(_start(), _command(msg_type, msg))  # type: ignore[arg-type]
    assert caught.value.code == ap.PROTOCOL_VIOLATION


def test_an_out_of_range_retry_delay_is_a_protocol_error() -> None:
    err = pb.ErrorMessage(code=500, message="x", next_retry_delay=2**64 - 1)
    frame = ap.encode_message(MessageType.ERROR, err)
    with pytest.raises(ProtocolError, match="next_retry_delay"):
        ap.AttemptProtocol().feed(frame)


def test_the_sdk_can_ask_to_pause() -> None:
    err = pb.ErrorMessage(code=500, message="x", behavior=pb.PAUSE)
    (event,) = ap.AttemptProtocol().feed(ap.encode_message(MessageType.ERROR, err))
    assert isinstance(event, ap.Errored) and event.pause and not event.fail


def test_an_end_frame_that_does_not_parse_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        ap.AttemptProtocol().feed(bytes.fromhex("0003000000000001") + b"\x08")
