"""Prometheus metrics: counted from a real partition's committed effects and commits, from
ingress responses, and from the invoker's connection pools; read back from the text."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from pyrestate.core.commands import (
    AppendCommand,
    AttemptEnded,
    AttemptFailed,
    Invoke,
    RetryPolicy,
)
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import Failure, HandlerType, JournalEntry, ServiceType, Target
from pyrestate.ingress.app import ADMIT_HOOK
from pyrestate.invoker.transport import Transport, open_transport
from pyrestate.partition.processor import PartitionProcessor
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType
from pyrestate.storage.sqlite import SqlitePartitionStore
from pyrestate.telemetry.metrics import Metrics, add_metrics_route

TESTS = Path(__file__).resolve().parents[1]
for helpers in (TESTS / "partition", TESTS / "invoker"):
    if str(helpers) not in sys.path:
        sys.path.insert(0, str(helpers))

from partition_helpers import GREET, Clock, Effects, settle, store_fixture  # noqa: E402, F401
from prometheus_text import samples, value  # noqa: E402
from transport_helpers import hypercorn_server  # noqa: E402


def _output(inv: InvocationId, attempt: int) -> AppendCommand:
    out = pb.OutputCommandMessage()
    out.value.content = b"done"
    return AppendCommand(inv, attempt, "dp", JournalEntry(MessageType.OUTPUT_COMMAND, b""), out)


async def test_attempts_retries_and_completions_come_from_committed_effects(
    store: SqlitePartitionStore,
) -> None:
    clock = Clock()
    p = PartitionProcessor(store, clock)
    p.invoker = Effects()
    metrics = Metrics(p, node_name="n1")
    await p.start()
    ok, terminal, paused = (InvocationId(1, bytes(15) + bytes([i])) for i in (1, 2, 3))
    for inv in (ok, terminal, paused):
        await p.request(lambda t, inv=inv: Invoke(inv, GREET, b"", reply=t))
    p.submit(AttemptFailed(ok, 1, "dp", Failure(500, "boom"), RetryPolicy(100)))
    p.submit(AttemptFailed(terminal, 1, "dp", Failure(409, "no"), RetryPolicy(), terminal=True))
    p.submit(AttemptFailed(paused, 1, "dp", Failure(500, "stuck"), RetryPolicy(), pause=True))
    await settle(p)
    clock.now += 100  # the retry of ``ok`` is due
    p.time_moved()
    await settle(p)
    clock.now += 150
    p.submit(_output(ok, 2))
    p.submit(AttemptEnded(ok, 2, "dp"))
    await settle(p)

    s = samples(await metrics.scrape())
    assert value(s, "restate_invocation_attempts_total", service="Greeter") == 4
    assert value(s, "restate_invocation_retries_total", service="Greeter") == 1
    done = "restate_invocations_completed_total"
    assert value(s, done, service="Greeter", result="success") == 1
    assert value(s, done, service="Greeter", result="failure") == 1
    tasks = "restate_invoker_invocation_tasks_total"
    assert value(s, tasks, status="started", partition_id="0") == 4
    assert value(s, tasks, status="failed", transient="true") == 1
    assert value(s, tasks, status="failed", transient="false") == 1
    # Only ``ok`` started here, created 250 ms before it completed (``terminal`` too, but
    # with no time passed).
    assert value(s, "restate_invocation_duration_seconds_count", service="Greeter") == 2
    assert value(s, "restate_invocation_duration_seconds_sum", service="Greeter") == 0.25
    bucket = "restate_invocation_duration_seconds_bucket"
    assert value(s, bucket, service="Greeter", le="0.1") == 1
    assert value(s, bucket, service="Greeter", le="0.25") == 2
    live = "restate_invocations"
    assert value(s, live, service="Greeter", status="paused") == 1
    assert value(s, live, service="Greeter", status="invoked") == 0
    assert value(s, "restate_partition_commit_duration_seconds_count", partition_id="0") >= 4
    # Every sample says which node it comes from.
    assert {(x.labels["cluster_name"], x.labels["node_name"]) for x in s} == {
        ("localcluster", "n1")
    }
    assert not [x for x in s if x.name.endswith("_created")]
    await p.stop()


async def test_commit_batches_queue_depth_and_live_invocations_by_status(
    store: SqlitePartitionStore,
) -> None:
    clock = Clock()
    p = PartitionProcessor(store, clock)
    p.invoker = Effects()
    metrics = Metrics(p)
    await p.start()
    counter = Target("Counter", "add", "k", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE)
    # Submitted without yielding: the writer takes all three in one batch.
    for i in range(3):
        p.submit(Invoke(InvocationId(1, bytes(15) + bytes([i])), GREET, b""))
    s = samples(generate_latest(metrics.registry))
    assert value(s, "restate_partition_queue_depth", partition_id="0") == 3
    await settle(p)
    s = samples(generate_latest(metrics.registry))
    assert value(s, "restate_partition_queue_depth") == 0
    assert value(s, "restate_partition_commit_batch_size_count") == 1
    assert value(s, "restate_partition_commit_batch_size_sum") == 3
    assert value(s, "restate_partition_commit_batch_size_bucket", le="2.0") == 0
    assert value(s, "restate_partition_commit_batch_size_bucket", le="4.0") == 1
    assert value(s, "restate_partition_commit_duration_seconds_count") == 1

    # An exclusive handler's key: one runs, the next waits in the inbox; a delayed one
    # waits in storage only.
    for i in (10, 11):
        p.submit(Invoke(InvocationId(2, bytes(15) + bytes([i])), counter, b""))
    later = clock.now + 3_600_000
    p.submit(Invoke(InvocationId(3, bytes(16)), counter, b"", execution_time=later))
    await settle(p)
    s = samples(await metrics.scrape())
    live = "restate_invocations"
    assert value(s, live, service="Greeter", status="invoked") == 3
    assert value(s, live, service="Counter", status="invoked") == 1
    assert value(s, live, service="Counter", status="inboxed") == 1
    assert value(s, live, service="Counter", status="scheduled") == 1
    assert value(s, live, service="Counter", status="suspended") == 0
    await p.stop()


async def _answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A stand-in ingress for paths ``/<service>/<call|send>[/<status>]``: it admits the
    requests to Counter and Greeter (the only services registered) as the ingress does,
    and answers with the status (and error source) the path asks for."""
    parts = scope["path"].split("/")[1:]
    if parts[0] in ("Counter", "Greeter"):
        scope[ADMIT_HOOK](parts[0], parts[1])
    status = int(parts[-1]) if parts[-1].isdigit() else 200
    headers = [(b"content-type", b"application/json")]
    if scope.get("query_string") == b"invocation":
        headers.append((b"x-restate-error-source", b"invocation"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


async def _request(app: Any, path: str, query: bytes = b"") -> int:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "query_string": query}
    await app(scope, receive, send)
    return sent[0]["status"]


async def test_ingress_responses_are_counted_by_code_and_outcome(
    store: SqlitePartitionStore,
) -> None:
    metrics = Metrics(PartitionProcessor(store))
    app = metrics.wrap_ingress(_answer)
    assert await _request(app, "/Counter/call") == 200
    await _request(app, "/Counter/call")
    await _request(app, "/Counter/send")
    await _request(app, "/Greeter/send")
    await _request(app, "/Greeter/call")
    await _request(app, "/Greeter/call/500", b"invocation")  # the handler failed
    await _request(app, "/Greeter/call/400")  # refused by the ingress
    await _request(app, "/Greeter/call/503")
    await _request(app, "/Nope/call/404")  # no such service: only its status code counts
    await _request(app, "/restate/health")
    s = samples(generate_latest(metrics.registry))
    req = "restate_ingress_requests_total"
    assert value(s, req, status="admitted", rpc_service="", rpc_type="") == 8
    assert value(s, req, status="completed", rpc_service="Counter", rpc_type="call") == 2
    assert value(s, req, status="completed", rpc_service="Counter", rpc_type="send") == 1
    assert value(s, req, status="completed", rpc_service="Greeter", rpc_type="send") == 1
    assert value(s, req, status="completed", rpc_service="Greeter", rpc_type="call") == 1
    assert value(s, req, status="invocation_error", rpc_service="Greeter") == 1
    assert value(s, req, status="request_error", rpc_service="Greeter") == 1
    assert value(s, req, status="ingress_error", rpc_service="Greeter") == 1
    assert not [x for x in s if x.labels.get("rpc_service") == "Nope"]
    codes = "restate_ingress_http_requests_total"
    assert value(s, codes, code="200") == 6
    assert [value(s, codes, code=c) for c in ("400", "404", "500", "503")] == [1, 1, 1, 1]
    latency = "restate_ingress_request_duration_seconds_count"
    assert value(s, latency, rpc_service="Counter", rpc_type="call") == 2
    assert value(s, latency, rpc_service="Greeter", rpc_type="call") == 4


async def test_a_failing_app_counts_as_a_500(store: SqlitePartitionStore) -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        scope[ADMIT_HOOK]("Greeter", "call")
        raise RuntimeError("bug")

    metrics = Metrics(PartitionProcessor(store))
    with pytest.raises(RuntimeError):
        await _request(metrics.wrap_ingress(broken), "/Greeter/greet")
    s = samples(generate_latest(metrics.registry))
    assert value(s, "restate_ingress_http_requests_total", code="500") == 1
    assert value(s, "restate_ingress_requests_total", status="ingress_error") == 1


async def test_attempts_the_invoker_reports(store: SqlitePartitionStore) -> None:
    metrics = Metrics(PartitionProcessor(store))
    metrics.attempt_ended("ended", 0.02)
    metrics.attempt_ended("suspended", 3.0)
    metrics.attempt_ended("failed", 0.5)
    s = samples(generate_latest(metrics.registry))
    tasks = "restate_invoker_invocation_tasks_total"
    assert value(s, tasks, status="completed") == 1
    assert value(s, tasks, status="suspended") == 1
    assert value(s, "restate_invoker_task_duration_seconds_count") == 3
    assert value(s, "restate_invoker_task_duration_seconds_bucket", le="1.0") == 2


async def _hello(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hi"})


async def test_open_deployment_connections_per_address(store: SqlitePartitionStore) -> None:
    async with hypercorn_server(_hello) as uri:
        transports: dict[tuple[str, str], Transport] = {
            (uri, "HTTP/2.0"): open_transport(uri, "HTTP/2.0"),
            (uri, "HTTP/1.1"): open_transport(uri, "HTTP/1.1"),
            ("asgi://examples.counter/app", "HTTP/2.0"): open_transport(
                "asgi://examples.counter/app", "HTTP/2.0"
            ),
        }
        metrics = Metrics(PartitionProcessor(store), transports=lambda: transports)

        def connections() -> dict[str, float]:
            s = samples(generate_latest(metrics.registry))
            return {x.labels["address"]: x.value for x in s if x.name.endswith("_connections")}

        assert connections() == {uri: 0, "asgi://examples.counter/app": 0}
        for version in ("HTTP/2.0", "HTTP/1.1"):
            response = await transports[uri, version].request("GET", "/", [])
            assert response.body == b"hi"
        # Idle now, and still open: one of each pool, summed under the address.
        assert connections() == {uri: 2, "asgi://examples.counter/app": 0}
        for transport in transports.values():
            await transport.aclose()
        assert connections()[uri] == 0


async def test_the_admin_route_serves_the_text(store: SqlitePartitionStore) -> None:
    routes: dict[tuple[str, str], Any] = {}

    class Admin:
        def route(self, method: str, path: str, handler: Any) -> None:
            routes[method, path] = handler

    metrics = Metrics(PartitionProcessor(store))
    add_metrics_route(Admin(), metrics)
    response = await routes["GET", "/metrics"](None)
    assert response.status == 200
    assert dict(response.headers)["content-type"].startswith("text/plain")
    assert b"# TYPE restate_ingress_requests_total counter" in response.body
