"""The ingress app under hostile input: huge delays, waiting callers that hang up.

The app runs against a fake partition (what it submits is recorded) or a real one on a
temporary SQLite store, driven by hand-written ASGI receive/send functions so that the
test decides exactly when the client disconnects.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import types
from pathlib import Path
from typing import Any

import pytest

from pyrestate.core.commands import Invoke, Retention
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import HandlerType, Output, ServiceType, Target
from pyrestate.ingress.app import IngressApp, Route
from pyrestate.ingress.durations import DurationError, parse_duration_ms
from pyrestate.partition.processor import Answer, PartitionProcessor
from pyrestate.storage.sqlite import SqlitePartitionStore


class Schemas:
    """One plain service, ``Greeter/greet``, taking any body."""

    def route(self, service: str, handler: str) -> Route:
        if (service, handler) != ("Greeter", "greet"):
            raise LookupError(f"service '{service}' not found")
        return Route(
            public=True,
            output_content_type=lambda empty: None if empty else "application/json",
            retention=Retention(),
            target_for=lambda key: Target(
                "Greeter", "greet", None, ServiceType.SERVICE, HandlerType.SHARED
            ),
            check_input=lambda content_type, body: None,
        )

    def is_keyed(self, service: str) -> bool:
        self.route(service, "greet")
        return False

    def service_names(self) -> list[str]:
        return ["Greeter"]


class FakePartition:
    """Accepts every command; calls stay pending until the test completes them."""

    def __init__(self) -> None:
        self.inputs: list[bytes] = []
        self.forgotten: list[InvocationId] = []
        self.completions: dict[InvocationId, asyncio.Future[Output]] = {}

    def now(self) -> int:
        return int(time.time() * 1000)

    async def request(self, make: Any, follow: bool = True) -> Answer:
        command = make(0)
        assert isinstance(command, Invoke)
        # Keep the input, not the command: what else holds it is what the test looks at.
        self.inputs.append(command.input)
        completion: asyncio.Future[Output] = asyncio.get_running_loop().create_future()
        self.completions[command.invocation_id] = completion
        return Answer(command.invocation_id, None, completion)

    def forget(self, invocation_id: InvocationId, completion: asyncio.Future[Output]) -> None:
        completion.cancel()
        self.forgotten.append(invocation_id)
        del self.completions[invocation_id]


class Client:
    """One ASGI request: its body, then silence until ``hang_up()``."""

    def __init__(self, method: str, path: str, body: bytes = b"", query: bytes = b"") -> None:
        self.scope = {
            "type": "http",
            "method": method,
            "path": path,
            "raw_path": path.encode(),
            "query_string": query,
            "headers": [(b"content-type", b"application/json")],
        }
        self._messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._messages.put_nowait({"type": "http.request", "body": body, "more_body": False})
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        return await self._messages.get()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def hang_up(self) -> None:
        self._messages.put_nowait({"type": "http.disconnect"})

    @property
    def status(self) -> int:
        return self.sent[0]["status"]

    def json(self) -> Any:
        return json.loads(self.sent[1]["body"])


async def call(app: IngressApp, client: Client) -> None:
    await app(client.scope, client.receive, client.send)


# --- untrusted numbers


@pytest.mark.parametrize(
    "text",
    ["99999999999999999999999999999d", "9" * 400 + "d", "P" + "9" * 400 + "D", "7304485d"],
)
def test_durations_too_large_for_any_delay_are_refused(text: str) -> None:
    with pytest.raises(DurationError, match="too large"):
        parse_duration_ms(text)


@pytest.mark.parametrize(
    "delay",
    [
        "200000000000d",  # crashed the partition writer: the commit overflowed SQLite
        "99999999999999999999999999999d",
        "9" * 400 + "s",
        "7000000d",  # a valid duration, but past the year 9999
    ],
)
async def test_delay_past_what_a_timestamp_holds_is_a_400(delay: str) -> None:
    partition = FakePartition()
    app = IngressApp(partition, Schemas())  # type: ignore[arg-type]
    client = Client("POST", "/Greeter/greet/send", b"1", f"delay={delay}".encode())
    await call(app, client)
    assert client.status == 400
    doc = client.json()
    assert doc["code"] == 400 and "delay query parameter" in doc["message"]
    assert partition.inputs == []


async def test_delay_up_to_the_year_9999_is_accepted() -> None:
    partition = FakePartition()
    app = IngressApp(partition, Schemas())  # type: ignore[arg-type]
    client = Client("POST", "/Greeter/greet/send", b"1", b"delay=2000000d")
    await call(app, client)
    assert client.status == 202
    assert client.json()["executionTime"].startswith("7")


# --- waiting calls


async def test_a_waiting_call_does_not_hold_its_body() -> None:
    partition = FakePartition()
    app = IngressApp(partition, Schemas())  # type: ignore[arg-type]
    client = Client("POST", "/Greeter/greet", b"x" * 1_000_000)
    task = asyncio.create_task(call(app, client))
    while not partition.completions:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    gc.collect()
    holders = [
        r
        for r in gc.get_referrers(partition.inputs[0])
        if isinstance(r, types.FrameType | types.CellType)
    ]
    assert holders == [], "the waiting request still references its input"
    [completion] = partition.completions.values()
    completion.set_result(Output(value=b'"hi"'))
    await task
    assert client.status == 200 and client.sent[1]["body"] == b'"hi"'


async def test_a_caller_that_hangs_up_is_forgotten() -> None:
    partition = FakePartition()
    app = IngressApp(partition, Schemas())  # type: ignore[arg-type]
    client = Client("POST", "/Greeter/greet", b"1")
    task = asyncio.create_task(call(app, client))
    while not partition.completions:
        await asyncio.sleep(0)
    [inv_id] = partition.completions
    client.hang_up()
    await asyncio.wait_for(task, 2)
    assert partition.forgotten == [inv_id]
    assert client.sent == []  # nobody to answer


@pytest.fixture
async def processor(tmp_path: Path) -> Any:
    store = SqlitePartitionStore(tmp_path / "p.db")
    partition = PartitionProcessor(store)
    await partition.start()
    yield partition
    await partition.stop()
    store.close()


async def _pending_in(partition: PartitionProcessor) -> None:
    while not partition._completions:
        await asyncio.sleep(0.005)


async def test_hang_up_leaves_no_waiter_in_the_real_partition(
    processor: PartitionProcessor,
) -> None:
    app = IngressApp(processor, Schemas())
    client = Client("POST", "/Greeter/greet", b"1")
    task = asyncio.create_task(call(app, client))
    await asyncio.wait_for(_pending_in(processor), 2)
    client.hang_up()
    await asyncio.wait_for(task, 2)
    assert processor._completions == {}


async def test_attach_that_hangs_up_leaves_no_waiter(processor: PartitionProcessor) -> None:
    app = IngressApp(processor, Schemas())
    send = Client("POST", "/Greeter/greet/send", b"1")
    await call(app, send)
    inv_id = send.json()["invocationId"]
    assert processor._completions == {}  # nobody waits for a send
    attach = Client("GET", f"/restate/invocation/{inv_id}/attach")
    task = asyncio.create_task(call(app, attach))
    await asyncio.wait_for(_pending_in(processor), 2)
    attach.hang_up()
    await asyncio.wait_for(task, 2)
    assert processor._completions == {}


# --- lookups: bodies and paths that name an invocation


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"x", "Expecting value"),
        (b'"x"', "expected an object"),
        (b'{"type": "workflow"}', "missing field `target`"),
        (b'{"target": "nope"}', "unknown variant `nope`"),
        (b'{"target": "workflow", "workflowName": "Wf"}', "missing field `workflowKey`"),
        (b'{"target": "invocation", "invocationId": 7}', "bad `invocationId`"),
        (b"\xff\xfe", "Expecting value"),
    ],
)
async def test_a_bad_lookup_body_is_refused_naming_the_problem(body: bytes, problem: str) -> None:
    partition = FakePartition()
    app = IngressApp(partition, Schemas())  # type: ignore[arg-type]
    client = Client("POST", "/restate/lookup", body)
    await call(app, client)
    # The official answers 500 "cannot read body: invalid lookup body: ..." too.
    assert client.status == 500
    message = client.json()["message"]
    assert message.startswith("cannot read body: invalid lookup body: ") and problem in message
    assert partition.inputs == []


async def test_lookup_derives_the_official_ids() -> None:
    app = IngressApp(FakePartition(), Schemas())  # type: ignore[arg-type]
    bodies = {
        b'{"target": "workflow", "workflowName": "Wf", "workflowKey": "w1"}': (
            "inv_12kpUQONmeFb2WqsVOkAjH4phS34cOyIC8"
        ),
        b'{"target": "idempotentInvocation", "service": "Greeter", "handler": "greet", '
        b'"idempotencyKey": "abc"}': "inv_17wAacjsoPkD5V94Uwh9793XSUOPmpouFs",
    }
    for body, official in bodies.items():
        client = Client("POST", "/restate/lookup", body)
        await call(app, client)
        assert (client.status, client.json()) == (200, {"invocationId": official})


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/restate/workflow/Wf/w1", 400),
        ("GET", "/restate/workflow/Wf/w1/run/attach", 400),
        ("POST", "/restate/workflow/Wf/w1/attach", 405),
        ("POST", "/restate/attach/inv_12kpUQONmeFb2WqsVOkAjH4phS34cOyIC8", 405),
        ("GET", "/restate/output", 405),
        ("GET", "/restate/lookup", 405),
        ("GET", "/restate/attach/abc", 400),
    ],
)
async def test_malformed_lookup_paths_are_refused(method: str, path: str, status: int) -> None:
    partition = FakePartition()
    app = IngressApp(partition, Schemas())  # type: ignore[arg-type]
    client = Client(method, path)
    await call(app, client)
    assert client.status == status
    assert partition.inputs == []
