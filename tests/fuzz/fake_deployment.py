"""A deployment that answers discovery correctly and invocations with garbage.

It runs in a background thread of the test process (see `FakeDeployment` for its two
listeners), so the test can tell it what to answer:

* ``{prefix}/discover`` answers what `set_discovery` put there for that prefix;
* ``{prefix}/invoke/...`` reads the StartMessage and the InputCommand, whose JSON input
  ``{"case": n}`` names the `Plan` to answer with, and counts the attempt; an input that
  names no plan (an invocation spawned by a fuzzed call) gets a clean Output and End.

The plan generators below build the garbage: random bytes, unknown frame types,
truncated and oversized frames, bodies that are not protobuf, and real messages with
extreme values in every numeric field.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import itertools
import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message
from harness import answer_lifespan, free_ports, port_open, wait_until
from hypercorn.asyncio import serve
from hypercorn.config import Config

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import (
    DEFAULT_MAX_FRAME_SIZE,
    MESSAGE_CLASSES,
    NOTIFICATION_RANGE,
    REQUIRES_ACK_FLAG,
    Frame,
    FrameDecoder,
    MessageType,
    encode_frame,
    encode_message,
)

U32 = 2**32 - 1
U64 = 2**64 - 1
# Sentinel content type: answer with the protocol content type the request carried.
ECHO = "<echo>"
BIDI_PREFIX = "/bidi"
RR_PREFIX = "/rr"


@dataclass(frozen=True, slots=True)
class Plan:
    label: str  # what the answer is, for reports
    body: bytes
    # Garbage that cannot end the attempt cleanly: the server must fail it and retry.
    expect_retry: bool
    keyed: bool | None = None  # needs a virtual object (True) or a plain service (False)
    status: int = 200
    content_type: str | None = ECHO  # None: no content-type header
    cuts: tuple[int, ...] = ()  # body offsets where a new DATA chunk starts


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    cuts: tuple[int, ...] = ()

    def chunks(self) -> list[bytes]:
        edges = [0, *self.cuts, len(self.body)]
        return [self.body[a:b] for a, b in itertools.pairwise(edges)]


def manifest(mode: str, names: tuple[str, str]) -> dict[str, Any]:
    """A manifest like the Python SDK's: one service and one virtual object, handler `run`.

    Fast retries, capped, so garbage cases are re-attempted within the test's wait and
    do not pile up afterwards.
    """
    handler_io = {
        "input": {"required": False, "contentType": "application/json"},
        "output": {"contentType": "application/json", "setContentTypeIfEmpty": False},
    }
    retries = {
        "retryPolicyInitialInterval": 100,
        "retryPolicyMaxInterval": 1000,
        "retryPolicyMaxAttempts": 10,
        "retryPolicyOnMaxAttempts": "KILL",
    }
    service, obj = names
    return {
        "protocolMode": mode,
        "minProtocolVersion": 5,
        "maxProtocolVersion": 7,
        "services": [
            {
                "name": service,
                "ty": "SERVICE",
                **retries,
                "handlers": [{"name": "run", **handler_io}],
            },
            {
                "name": obj,
                "ty": "VIRTUAL_OBJECT",
                **retries,
                "handlers": [{"name": "run", "ty": "EXCLUSIVE", **handler_io}],
            },
        ],
    }


MANIFEST_V4 = "application/vnd.restate.endpointmanifest.v4+json"


class FakeDeployment:
    """Two listeners in one background thread sharing one table of answers.

    `url` is hypercorn (HTTP/1.1, and h2c for discovery): the request/response
    deployment and the admin fuzz's manifests live there. `h2_url` is a small h2c server
    written here on the h2 library for the bidi deployment: hypercorn's HTTP/2 stalls or
    drops whole connections when streams are reset while it still queues their data,
    which garbage answers do all the time, and that would be the fake's failure.
    """

    def __init__(self, log_path: Path) -> None:
        self.port, self.h2_port = free_ports(2)
        self.url = f"http://127.0.0.1:{self.port}"
        self.h2_url = f"http://127.0.0.1:{self.h2_port}"
        self._log_path = log_path
        self._cond = threading.Condition()
        self._discovery: dict[str, Answer] = {}
        self._plans: dict[int, Plan] = {}
        self._attempts: dict[int, int] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    # -- what to answer

    def set_discovery(self, prefix: str, answer: Answer) -> None:
        with self._cond:
            self._discovery[prefix] = answer

    def serve_manifest(self, prefix: str, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.set_discovery(prefix, Answer(200, (("content-type", MANIFEST_V4),), body))

    def add_plan(self, case: int, plan: Plan) -> None:
        with self._cond:
            self._plans[case] = plan

    def attempts(self, case: int) -> int:
        with self._cond:
            return self._attempts.get(case, 0)

    def wait_attempts(self, case: int, n: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._attempts.get(case, 0) >= n, timeout)

    def discovery_answer(self, path: str) -> Answer:
        with self._cond:
            return self._discovery.get(path[: -len("/discover")], Answer(404, (), b""))

    def invoke_answer(self, headers: dict[str, str], frames: list[Frame]) -> Answer:
        """The answer to an attempt whose first frames are `frames`; counts the attempt."""
        case = _case_of(frames)
        with self._cond:
            plan = self._plans.get(case) if case is not None else None
            if case is not None:
                self._attempts[case] = self._attempts.get(case, 0) + 1
                self._cond.notify_all()
        if plan is None:
            plan = Plan("clean output", _clean_end(), expect_retry=False)
        out_headers: tuple[tuple[str, str], ...] = ()
        if plan.content_type is not None:
            ctype = headers.get("content-type", "application/vnd.restate.invocation.v5")
            out_headers = (
                ("content-type", ctype if plan.content_type == ECHO else plan.content_type),
            )
        return Answer(plan.status, out_headers, plan.body, plan.cuts)

    # -- lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fake-deployment", daemon=True)
        self._thread.start()
        for port in (self.port, self.h2_port):
            wait_until(lambda p=port: port_open(p), timeout=15, what="fake deployment listening")

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.errorlog = str(self._log_path)
        config.accesslog = None
        config.graceful_timeout = 1
        h2_server = loop.run_until_complete(
            loop.create_server(lambda: _H2Server(self), "127.0.0.1", self.h2_port)
        )
        try:
            loop.run_until_complete(
                serve(self._app, config, shutdown_trigger=self._stop.wait, mode="asgi")  # type: ignore[arg-type]
            )
        finally:
            h2_server.close()
            loop.close()

    # -- ASGI (hypercorn)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.endswith("/discover"):
            await _asgi_respond(send, self.discovery_answer(path))
            return
        if "/invoke/" not in path:
            await _asgi_respond(send, Answer(404, (), b""))
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        decoder = FrameDecoder()
        frames: list[Frame] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            frames += decoder.feed(message.get("body", b""))
            if not message.get("more_body", False) or len(frames) >= 2:
                break
        await _asgi_respond(send, self.invoke_answer(headers, frames))


async def _asgi_respond(send: Any, answer: Answer) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers],
        }
    )
    for chunk in answer.chunks():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    with contextlib.suppress(Exception):  # the server may have hung up already
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class _H2Server(asyncio.Protocol):
    """One h2c connection: reads everything (acknowledging it at once, so flow control
    never stalls), answers each stream once its start and input frames are in."""

    def __init__(self, fake: FakeDeployment) -> None:
        self._fake = fake
        config = h2.config.H2Configuration(client_side=False, header_encoding="latin-1")
        self._conn = h2.connection.H2Connection(config)
        self._transport: asyncio.Transport | None = None
        self._requests: dict[int, tuple[dict[str, str], FrameDecoder, list[Frame]]] = {}
        self._pending: dict[int, collections.deque[bytes]] = {}  # answers held by flow control

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._conn.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            if self._transport is not None:
                self._transport.close()
            return
        for event in events:
            self._handle(event)
        self._flush()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = {str(k): str(v) for k, v in event.headers}
            self._requests[event.stream_id] = (headers, FrameDecoder(), [])
            self._maybe_answer(event.stream_id, ended=False)
        elif isinstance(event, h2.events.DataReceived):
            self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            request = self._requests.get(event.stream_id)
            if request is not None:
                request[2].extend(request[1].feed(event.data))
                self._maybe_answer(event.stream_id, ended=False)
        elif isinstance(event, h2.events.StreamEnded):
            self._maybe_answer(event.stream_id, ended=True)
        elif isinstance(event, h2.events.StreamReset):
            self._requests.pop(event.stream_id, None)
            self._pending.pop(event.stream_id, None)
        elif isinstance(event, h2.events.WindowUpdated):
            for stream_id in list(self._pending):
                self._send_pending(stream_id)

    def _maybe_answer(self, stream_id: int, ended: bool) -> None:
        request = self._requests.get(stream_id)
        if request is None:
            return
        headers, _, frames = request
        path = headers.get(":path", "")
        if path.endswith("/discover"):
            answer = self._fake.discovery_answer(path)
        elif "/invoke/" in path and (ended or len(frames) >= 2):
            answer = self._fake.invoke_answer(headers, frames)
        elif ended:
            answer = Answer(404, (), b"")
        else:
            return
        del self._requests[stream_id]  # answered once; later data is only acknowledged
        with contextlib.suppress(h2.exceptions.H2Error):
            self._conn.send_headers(stream_id, [(":status", str(answer.status)), *answer.headers])
            self._pending[stream_id] = collections.deque(answer.chunks())
            self._send_pending(stream_id)

    def _send_pending(self, stream_id: int) -> None:
        chunks = self._pending[stream_id]
        try:
            while chunks:
                window = min(
                    self._conn.local_flow_control_window(stream_id),
                    self._conn.max_outbound_frame_size,
                )
                if window <= 0:
                    return
                chunk = chunks.popleft()
                if len(chunk) > window:
                    chunks.appendleft(chunk[window:])
                    chunk = chunk[:window]
                # One DATA frame per piece, so the server sees frames split anywhere.
                self._conn.send_data(stream_id, chunk)
            self._conn.end_stream(stream_id)
        except h2.exceptions.H2Error:
            pass  # the server reset the stream: nothing more to say on it
        del self._pending[stream_id]

    def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._requests.clear()
        self._pending.clear()


def _case_of(frames: list[Any]) -> int | None:
    if len(frames) < 2 or frames[1].type != MessageType.INPUT_COMMAND:
        return None
    try:
        msg = pb.InputCommandMessage.FromString(frames[1].body)
        case = json.loads(msg.value.content)["case"]
    except (DecodeError, ValueError, KeyError, TypeError):
        return None
    return case if isinstance(case, int) else None


def _clean_end() -> bytes:
    out = pb.OutputCommandMessage(value=pb.Value(content=b'"ok"'))
    return encode_message(MessageType.OUTPUT_COMMAND, out) + encode_message(
        MessageType.END, pb.EndMessage()
    )


# --- Messages with extreme values

_EXTREME_INTS: dict[int, tuple[int, ...]] = {
    FieldDescriptor.TYPE_UINT32: (0, 1, 2**31 - 1, 2**31, U32),
    FieldDescriptor.TYPE_UINT64: (0, 1, 2**53 + 1, 2**63 - 1, 2**63, U64),
    FieldDescriptor.TYPE_INT32: (-(2**31), -1, 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), -1, 2**63 - 1),
    # Proto3 enums are open: any int32 decodes.
    FieldDescriptor.TYPE_ENUM: (0, 1, 2, 99, 2**31 - 1, -1),
}
_STRINGS = (
    "",
    "x",
    "Greeter",
    "greet",
    "FuzzBidi",
    "FuzzBidiObj",
    "run",
    "Visits",
    "\x00",
    "é🙂\u200b",
    "../%2F",
    "inv_1" + "0" * 33,
    "inv_1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    "sign_1" + "A" * 40,
    "prom_1" + "_" * 40,
    "a" * 70_000,
)


def _scalar(fd: FieldDescriptor, rng: random.Random) -> Any:
    if fd.type in _EXTREME_INTS:
        return rng.choice(_EXTREME_INTS[fd.type])
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if fd.type == FieldDescriptor.TYPE_STRING:
        return rng.choice(_STRINGS)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return rng.choice((b"", b'"x"', b"\xff" * 64, rng.randbytes(rng.randrange(1, 4096))))
    raise AssertionError(f"no extreme values for field type {fd.type}")


def fill(msg: Message, rng: random.Random, depth: int = 0) -> Message:
    """Set a random subset of `msg`'s fields, numbers at the edges of their types."""
    for fd in msg.DESCRIPTOR.fields:
        if rng.random() < 0.25:
            continue
        value = getattr(msg, fd.name)
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            if fd.is_repeated:
                for _ in range(rng.choice((1, 2, 3))):
                    fill(value.add(), rng, depth + 1)
            else:
                value.SetInParent()
                fill(value, rng, depth + 1)
        elif fd.is_repeated:
            value.extend(_scalar(fd, rng) for _ in range(rng.choice((1, 2, 5, 100))))
        else:
            setattr(msg, fd.name, _scalar(fd, rng))
    return msg


def _describe(msg_type: int, msg: Message) -> str:
    try:
        name = MessageType(msg_type).name
    except ValueError:
        name = f"0x{msg_type:04x}"
    text = text_format.MessageToString(msg, as_one_line=True)
    if len(text) > 400:
        text = text[:400] + "..."
    return f"{name}{{{text}}}"


def _extreme_frame(rng: random.Random) -> tuple[bytes, str]:
    msg_type = rng.choice(sorted(MESSAGE_CLASSES))
    msg = fill(MESSAGE_CLASSES[msg_type](), rng)
    flags = rng.choice((0, 0, REQUIRES_ACK_FLAG, 0xFFFF))
    return encode_message(msg_type, msg, flags), _describe(msg_type, msg) + (
        f" flags=0x{flags:04x}" if flags else ""
    )


# --- Plan generators


def _plan_extreme(rng: random.Random) -> Plan:
    parts: list[bytes] = []
    labels: list[str] = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        frame, label = _extreme_frame(rng)
        parts.append(frame)
        labels.append(label)
    ending = rng.choice(("end", "output+end", "nothing", "end+more"))
    if ending in ("end", "end+more"):
        parts.append(encode_message(MessageType.END, pb.EndMessage()))
    elif ending == "output+end":
        parts.append(_clean_end())
    if ending == "end+more":
        frame, label = _extreme_frame(rng)
        parts.append(frame)
        labels.append(f"END, {label}")
    return Plan(
        f"messages [{'; '.join(labels)}] then {ending}",
        b"".join(parts),
        # Only the extreme messages could end it (an End, Error or Suspension drawn by
        # chance), so no retry can be promised.
        expect_retry=False,
    )


def _plan_random_bytes(rng: random.Random) -> Plan:
    # The first header names a type no one defines, so a frame boundary can never
    # turn the bytes into a clean End by chance.
    first = encode_frame(rng.randrange(0x0100, 0x0400), b"")[:2]
    body = first + rng.randbytes(rng.choice((1, 5, 6, 64, 4096, 65536)))
    return Plan(f"random bytes ({len(body)}): {body[:24].hex()}...", body, expect_retry=True)


def _plan_unknown_type(rng: random.Random) -> Plan:
    msg_type = rng.choice(
        (
            rng.randrange(0x0008, 0x0400),
            0x040F,
            rng.randrange(0x0415, 0x8000),
            rng.randrange(NOTIFICATION_RANGE.start, NOTIFICATION_RANGE.stop),
            MessageType.START,
            MessageType.COMMAND_ACK,
            MessageType.PROPOSE_RUN_COMPLETION_ACK,
            # The custom range is journaled opaque; ending without End still fails.
            rng.randrange(0xFC00, 0x10000),
        )
    )
    body = rng.randbytes(rng.choice((0, 3, 100)))
    flags = rng.choice((0, REQUIRES_ACK_FLAG, 0xFFFF))
    frame = encode_frame(msg_type, body, flags)
    return Plan(
        f"frame type 0x{msg_type:04x} flags 0x{flags:04x} body {body.hex()[:40]}", frame, True
    )


def _plan_truncated(rng: random.Random) -> Plan:
    frame, label = _extreme_frame(rng)
    cut = rng.randrange(1, len(frame))
    return Plan(f"first {cut} of {len(frame)} bytes of {label}", frame[:cut], expect_retry=True)


def _plan_oversized(rng: random.Random) -> Plan:
    msg_type = rng.choice(sorted(MESSAGE_CLASSES))
    length = rng.choice((DEFAULT_MAX_FRAME_SIZE - 1, DEFAULT_MAX_FRAME_SIZE + 1, 2**31, U32))
    header = encode_frame(msg_type, b"")[:4] + length.to_bytes(4, "big")
    body = header + rng.randbytes(rng.choice((0, 10, 4096)))
    return Plan(f"frame type 0x{msg_type:04x} announcing {length} bytes", body, expect_retry=True)


_INVALID_WIRE = (
    b"\x08",  # a varint field without its value
    b"\x08" + b"\xff" * 10 + b"\x01",  # an 11-byte varint
    b"\x0a\x7f" + b"abc",  # a length past the end
    b"\x0a\xff\xff\xff\xff\x0f",  # a 4 GiB length
    b"\x00\x00",  # field number 0
    b"\x0f",  # wire type 7
    b"\x0e",  # wire type 6
    b"\x0b",  # a group that never ends
    b"\x0c",  # a group end without a start
    b"\x12\x02\xc3\x28",  # field 2 (a string in many messages) that is not UTF-8
)


def _plan_invalid_protobuf(rng: random.Random) -> Plan:
    msg_type = rng.choice([*sorted(MESSAGE_CLASSES), MessageType.SLEEP_COMPLETION])
    body = rng.choice(_INVALID_WIRE)
    cls = MESSAGE_CLASSES.get(msg_type, pb.NotificationTemplate)
    try:
        cls.FromString(body)
        parses = True
    except DecodeError:
        parses = False
    # Bytes protobuf accepts anyway (unknown fields of an End) may end it cleanly.
    return Plan(
        f"frame type 0x{msg_type:04x} with body {body.hex()}",
        encode_frame(msg_type, body),
        expect_retry=not parses,
    )


def _plan_bad_http(rng: random.Random) -> Plan:
    status, ctype = rng.choice(
        (
            (500, ECHO),
            (404, ECHO),
            (429, ECHO),
            (301, ECHO),
            (200, None),
            (200, "application/json"),
            (200, "application/vnd.restate.invocation.v1"),
            (200, "application/vnd.restate.invocation.v99"),
        )
    )
    return Plan(
        f"HTTP status {status}, content-type {ctype}",
        _clean_end(),
        True,
        status=status,
        content_type=ctype,
    )


def _seq(*frames: bytes) -> bytes:
    return b"".join(frames)


def _msg(msg_type: int, msg: Message, flags: int = 0) -> bytes:
    return encode_message(msg_type, msg, flags)


def _suspend(*completions: int, signals: tuple[int, ...] = ()) -> bytes:
    return _msg(
        MessageType.SUSPENSION,
        pb.SuspensionMessage(waiting_completions=completions, waiting_signals=signals),
    )


_END = encode_message(MessageType.END, pb.EndMessage())
_GREET = {"service_name": "Greeter", "handler_name": "greet", "parameter": b'"x"'}

# The cases the suite always runs first, whatever the seed: the numbers known or likely
# to overflow something (SQLite integers, datetime, float conversions).
TARGETED: tuple[Plan, ...] = (
    Plan(
        "SleepCommand wake_up_time=2**64-1 then Suspension on it",
        _seq(
            _msg(
                MessageType.SLEEP_COMMAND,
                pb.SleepCommandMessage(wake_up_time=U64, result_completion_id=1),
            ),
            _suspend(1),
        ),
        False,
    ),
    Plan(
        "SleepCommand wake_up_time=2**63 then Suspension on it",
        _seq(
            _msg(
                MessageType.SLEEP_COMMAND,
                pb.SleepCommandMessage(wake_up_time=2**63, result_completion_id=1),
            ),
            _suspend(1),
        ),
        False,
    ),
    Plan(
        "SleepCommand wake_up_time=2**63-1 then Suspension on it",
        _seq(
            _msg(
                MessageType.SLEEP_COMMAND,
                pb.SleepCommandMessage(wake_up_time=2**63 - 1, result_completion_id=1),
            ),
            _suspend(1),
        ),
        False,
    ),
    Plan(
        "SleepCommand wake_up_time=253402300800000 (year 10000) then Suspension",
        _seq(
            _msg(
                MessageType.SLEEP_COMMAND,
                pb.SleepCommandMessage(wake_up_time=253402300800000, result_completion_id=1),
            ),
            _suspend(1),
        ),
        False,
    ),
    Plan(
        "SleepCommand result_completion_id=2**32-1 then Suspension on it",
        _seq(
            _msg(
                MessageType.SLEEP_COMMAND,
                pb.SleepCommandMessage(wake_up_time=1, result_completion_id=U32),
            ),
            _suspend(U32),
        ),
        False,
    ),
    Plan(
        "OneWayCallCommand Greeter/greet invoke_time=2**64-1, then Output+End",
        _seq(
            _msg(
                MessageType.ONE_WAY_CALL_COMMAND,
                pb.OneWayCallCommandMessage(
                    invoke_time=U64, invocation_id_notification_idx=1, **_GREET
                ),
            ),
            _clean_end(),
        ),
        False,
    ),
    Plan(
        "OneWayCallCommand Greeter/greet invoke_time=2**63, then Output+End",
        _seq(
            _msg(
                MessageType.ONE_WAY_CALL_COMMAND,
                pb.OneWayCallCommandMessage(
                    invoke_time=2**63, invocation_id_notification_idx=1, **_GREET
                ),
            ),
            _clean_end(),
        ),
        False,
    ),
    Plan(
        "OneWayCallCommand Greeter/greet invocation_id_notification_idx=2**32-1, then Output+End",
        _seq(
            _msg(
                MessageType.ONE_WAY_CALL_COMMAND,
                pb.OneWayCallCommandMessage(invocation_id_notification_idx=U32, **_GREET),
            ),
            _clean_end(),
        ),
        False,
    ),
    Plan(
        "ErrorMessage next_retry_delay=2**64-1",
        _msg(MessageType.ERROR, pb.ErrorMessage(code=500, message="fuzz", next_retry_delay=U64)),
        False,
    ),
    Plan(
        "ErrorMessage next_retry_delay=2**63",
        _msg(MessageType.ERROR, pb.ErrorMessage(code=500, message="fuzz", next_retry_delay=2**63)),
        False,
    ),
    Plan(
        "ErrorMessage code=2**32-1 related_command_index=2**32-1 related_command_type=2**32-1",
        _msg(
            MessageType.ERROR,
            pb.ErrorMessage(
                code=U32, message="fuzz", related_command_index=U32, related_command_type=U32
            ),
        ),
        True,
    ),
    Plan(
        "ErrorMessage code=0 behavior=FAIL",
        _msg(MessageType.ERROR, pb.ErrorMessage(code=0, message="fuzz", behavior=pb.FAIL)),
        False,
    ),
    Plan(
        "CallCommand Greeter/greet result_completion_id=2**32-1 "
        "invocation_id_notification_idx=2**32-1, Suspension on it",
        _seq(
            _msg(
                MessageType.CALL_COMMAND,
                pb.CallCommandMessage(
                    result_completion_id=U32, invocation_id_notification_idx=U32, **_GREET
                ),
            ),
            _suspend(U32),
        ),
        False,
    ),
    Plan(
        "RunCommand result_completion_id=2**32-1, ProposeRunCompletion for it, Suspension on it",
        _seq(
            _msg(MessageType.RUN_COMMAND, pb.RunCommandMessage(result_completion_id=U32)),
            _msg(
                MessageType.PROPOSE_RUN_COMPLETION,
                pb.ProposeRunCompletionMessage(result_completion_id=U32, value=b"1"),
            ),
            _suspend(U32),
        ),
        False,
    ),
    Plan(
        "ProposeRunCompletion result_completion_id=2**32-1 without a RunCommand",
        _msg(
            MessageType.PROPOSE_RUN_COMPLETION,
            pb.ProposeRunCompletionMessage(result_completion_id=U32, value=b"1"),
        ),
        True,
    ),
    Plan(
        "Suspension waiting_completions=[2**32-1] waiting_signals=[2**32-1]",
        _suspend(U32, signals=(U32,)),
        False,
    ),
    Plan(
        "OutputCommand failure code=2**32-1 then End",
        _seq(
            _msg(
                MessageType.OUTPUT_COMMAND,
                pb.OutputCommandMessage(failure=pb.Failure(code=U32, message="x")),
            ),
            _END,
        ),
        False,
    ),
    Plan(
        "SetStateCommand with flags 0xFFFF (requires ack) on an object, then End",
        _seq(
            _msg(
                MessageType.SET_STATE_COMMAND,
                pb.SetStateCommandMessage(key=b"k", value=pb.Value(content=b"v")),
                0xFFFF,
            ),
            _clean_end(),
        ),
        False,
        keyed=True,
    ),
    Plan(
        "GetEagerStateCommand on a plain service",
        _seq(
            _msg(
                MessageType.GET_EAGER_STATE_COMMAND,
                pb.GetEagerStateCommandMessage(key=b"k", void=pb.Void()),
            ),
            _clean_end(),
        ),
        True,
        keyed=False,
    ),
    Plan(
        "SendSignalCommand to a garbage invocation id, idx=2**32-1",
        _seq(
            _msg(
                MessageType.SEND_SIGNAL_COMMAND,
                pb.SendSignalCommandMessage(
                    target_invocation_id="inv_1garbage", idx=U32, void=pb.Void()
                ),
            ),
            _clean_end(),
        ),
        False,
    ),
    Plan(
        "CompleteAwakeableCommand with a garbage awakeable id",
        _seq(
            _msg(
                MessageType.COMPLETE_AWAKEABLE_COMMAND,
                pb.CompleteAwakeableCommandMessage(
                    awakeable_id="sign_1!!", value=pb.Value(content=b"1")
                ),
            ),
            _clean_end(),
        ),
        False,
    ),
    Plan(
        "AttachInvocationCommand to a malformed invocation id, Suspension on it",
        _seq(
            _msg(
                MessageType.ATTACH_INVOCATION_COMMAND,
                pb.AttachInvocationCommandMessage(
                    invocation_id="inv_1" + "z" * 33, result_completion_id=1
                ),
            ),
            _suspend(1),
        ),
        False,
    ),
    Plan(
        "frame announcing 2**32-1 bytes",
        encode_frame(MessageType.OUTPUT_COMMAND, b"")[:4] + U32.to_bytes(4, "big") + b"x",
        True,
    ),
    Plan("frame type 0xffff (custom) then no End", encode_frame(0xFFFF, b"abc"), True),
    Plan("header of an OutputCommand, cut after 5 bytes", _clean_end()[:5], True),
    Plan("nothing at all (empty 200 answer)", b"", True),
)

GENERATORS: tuple[tuple[Callable[[random.Random], Plan], int], ...] = (
    (_plan_extreme, 30),
    (_plan_random_bytes, 10),
    (_plan_unknown_type, 10),
    (_plan_truncated, 10),
    (_plan_oversized, 8),
    (_plan_invalid_protobuf, 15),
    (_plan_bad_http, 5),
)


def make_plan(index: int, rng: random.Random) -> Plan:
    if index < len(TARGETED):
        plan = TARGETED[index]
    else:
        funcs, weights = zip(*GENERATORS, strict=True)
        plan = rng.choices(funcs, weights)[0](rng)
    # Deliver it in pieces now and then, to exercise the server's incremental decoding.
    if len(plan.body) > 1 and rng.random() < 0.3:
        cuts = sorted(rng.sample(range(1, len(plan.body)), min(3, len(plan.body) - 1)))
        plan = dataclasses.replace(plan, cuts=tuple(cuts))
    return plan
