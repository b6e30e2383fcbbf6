"""Traces of invocations, received by an OTLP collector in the test's process: the Tour's
checkout as one trace (ingress, start, attempts, calls between services, end), spans of
a sleeping invocation exported before it ends, the context handed to the SDK.

PYRESTATE_E2E_TARGET=official runs the same tests against the official server (the
journal actions' child spans are pyrestate's own and checked on it only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from harness import Deployment, Server, sql_rows
from otlp_receiver import Receiver, Span, grpc_receiver, http_receiver
from tansu import Tansu, tansu_broker  # noqa: F401  (the fixture "tansu")

# The server's own surface: the same with any SDK version or transport (run once).
pytestmark = pytest.mark.server_only

PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN = "b7ad6b7169203331"


@pytest.fixture(params=["http", "grpc"])
def otlp(request: pytest.FixtureRequest) -> Iterator[tuple[Receiver, str]]:
    yield from (http_receiver() if request.param == "http" else grpc_receiver())


@pytest.fixture
def server_options(otlp: tuple[Receiver, str], request: pytest.FixtureRequest) -> dict[str, Any]:
    # The official names; batches leave every 100 ms instead of every 5 s.
    env = {"RESTATE_TRACING_ENDPOINT": otlp[1], "OTEL_BSP_SCHEDULE_DELAY": "100"}
    if "tansu" in request.fixturenames:
        env |= request.getfixturevalue("tansu").cluster_env()
    return {"extra_env": env}


def _one(spans: list[Span], name: str) -> Span:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {len(found)} spans"
    return found[0]


def test_the_checkout_is_one_trace_across_its_services(
    server: Server,
    deployment: Callable[..., Deployment],
    http: httpx.Client,
    otlp: tuple[Receiver, str],
) -> None:
    receiver = otlp[0]
    deployment("tour")
    for seat in ("seat1", "seat2"):
        resp = http.post(f"{server.ingress_url}/CartObject/alice/addTicket", json=seat)
        assert resp.status_code == 200 and resp.json() is True, resp.text
    resp = http.post(
        f"{server.ingress_url}/CartObject/alice/checkout",
        headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"},
    )
    assert resp.status_code == 200 and resp.json() is True, resp.text

    def complete(spans: list[Span]) -> bool:
        ends = [
            s for s in spans if s.trace_id == PARENT_TRACE and s.name.startswith("invocation-end")
        ]
        return len(ends) == 4  # checkout, the payment, two tickets sold

    trace = [s for s in receiver.wait_for(complete) if s.trace_id == PARENT_TRACE]
    ingress = _one(trace, "ingress CartObject/{key}/checkout")
    assert ingress.parent == PARENT_SPAN, "the request's traceparent is honoured"
    assert ingress.attributes["restate.invocation.target"] == "CartObject/alice/checkout"
    inv = ingress.attributes["restate.invocation.id"]
    assert inv.startswith("inv_1")
    start = _one(trace, "invocation-start CartObject/{key}/checkout")
    attempt = _one(trace, "invocation-attempt CartObject/{key}/checkout")
    end = _one(trace, "invocation-end CartObject/{key}/checkout")
    assert start.parent == ingress.span_id
    assert attempt.parent == start.span_id and end.parent == start.span_id
    assert attempt.status == 1 and end.status == 1
    assert attempt.attributes["restate.invocation.id"] == inv
    assert attempt.attributes["rpc.system"] == "restate"
    assert attempt.attributes["restate.deployment.id"].startswith("dp_")
    assert end.attributes["restate.invocation.result"] == "success"
    commands = [e[1]["restate.journal.command.type"] for e in attempt.events]
    assert commands.count("Command/Call") == 3, commands
    # The calls' callees hang under the calling attempt, in the same trace.
    payment_start = _one(trace, "invocation-start CheckoutService/handle")
    assert payment_start.parent == attempt.span_id
    payment = _one(trace, "invocation-attempt CheckoutService/handle")
    assert payment.parent == payment_start.span_id
    assert payment.attributes["restate.invocation.target"] == "CheckoutService/handle"
    sold = [s for s in trace if s.name == "invocation-start TicketObject/{key}/markAsSold"]
    assert len(sold) == 2 and {s.parent for s in sold} == {attempt.span_id}
    assert {s.resource["service.name"] for s in trace} == {"Restate"}
    if server.kind == "pyrestate":
        call = _one(trace, "call CheckoutService/handle")
        assert call.parent == attempt.span_id
        run = _one(trace, "run payment")
        assert run.parent == payment.span_id and run.end >= run.start


def test_spans_of_a_sleeping_invocation_are_exported_before_it_ends(
    server: Server,
    deployment: Callable[..., Deployment],
    http: httpx.Client,
    otlp: tuple[Receiver, str],
) -> None:
    receiver = otlp[0]
    deployment("waiting")
    resp = http.post(
        f"{server.ingress_url}/Timers/nap/send", json={"tag": "traced", "millis": 60_000}
    )
    assert resp.status_code == 202, resp.text
    inv = resp.json()["invocationId"]

    def started(spans: list[Span]) -> bool:
        mine = [s for s in spans if s.attributes.get("restate.invocation.id") == inv]
        names = {s.name for s in mine}
        wanted = {"ingress Timers/nap", "invocation-start Timers/nap"}
        if server.kind == "pyrestate":
            wanted.add("sleep")
        return wanted <= names

    spans = receiver.wait_for(started)
    (status,) = sql_rows(http, server, f"SELECT status FROM sys_invocation WHERE id = '{inv}'")
    assert status["status"] != "completed", "still sleeping"
    assert not any(s.name.startswith("invocation-end") for s in spans)
    if server.kind == "pyrestate":
        (sleep,) = [s for s in spans if s.name == "sleep"]
        assert sleep.end - sleep.start >= 59 * 10**9, "the sleep as long as it lasts"


# The service exports its own spans over OTLP/HTTP: one receiver for both.
@pytest.mark.parametrize("otlp", ["http"], indirect=True)
def test_spans_the_service_creates_join_the_attempt_that_made_them(
    server: Server,
    deployment: Callable[..., Deployment],
    http: httpx.Client,
    otlp: tuple[Receiver, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver, endpoint = otlp
    # The deployment's process reads it (examples/traced.py exports its own spans there).
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.removeprefix("otlp+"))
    deployment("traced")
    resp = http.post(
        f"{server.ingress_url}/Quotes/quote",
        json="book",
        headers={"traceparent": f"00-{PARENT_TRACE}-{PARENT_SPAN}-01"},
    )
    assert resp.status_code == 200 and resp.json() == 40, resp.text
    names = {"price lookup", "invocation-attempt Quotes/quote"}
    spans = receiver.wait_for(lambda ss: names <= {s.name for s in ss})
    lookup = _one(spans, "price lookup")
    attempt = _one(spans, "invocation-attempt Quotes/quote")
    assert lookup.trace_id == PARENT_TRACE == attempt.trace_id
    assert lookup.parent == attempt.span_id, "the service's span hangs under its attempt"
    assert lookup.resource["service.name"] == "quotes"


@pytest.mark.parametrize("otlp", ["grpc"], indirect=True)
async def test_an_invocation_from_a_kafka_record_starts_its_trace_at_the_record(
    server: Server,
    deployment: Callable[..., Deployment],
    http: httpx.Client,
    otlp: tuple[Receiver, str],
    tansu: Tansu,
) -> None:
    receiver = otlp[0]
    deployment("user_feed")
    await tansu.create_topic("social-media-posts", 1)
    resp = http.post(
        f"{server.admin_url}/subscriptions",
        json={
            "source": "kafka://tansu/social-media-posts",
            "sink": "service://UserFeed/processPost",
            "options": {"auto.offset.reset": "earliest"},
        },
    )
    assert resp.status_code == 201, resp.text
    group = resp.json()["options"]["group.id"]
    posts = [b'{"seq": %d, "content": "hello"}' % seq for seq in (0, 1)]
    await tansu.produce("social-media-posts", [(b"user-01", p) for p in posts])

    def ended(spans: list[Span]) -> bool:
        return sum(s.name == "invocation-end UserFeed/{key}/processPost" for s in spans) == 2

    spans = receiver.wait_for(ended)
    ingress = [s for s in spans if s.name == "ingress_kafka UserFeed/{key}/processPost"]
    assert len(ingress) == 2, [s.name for s in spans]
    second = next(s for s in ingress if s.attributes["messaging.kafka.offset"] == 1)
    assert second.parent == "", "a trace of its own"
    assert second.attributes["messaging.system"] == "kafka"
    assert second.attributes["messaging.source.name"] == "social-media-posts"
    assert second.attributes["messaging.source.partition.id"] == 0
    assert second.attributes["messaging.consumer.group.name"] == group
    assert second.attributes["restate.invocation.target"] == "UserFeed/user-01/processPost"
    trace = [s for s in spans if s.trace_id == second.trace_id]
    start = _one(trace, "invocation-start UserFeed/{key}/processPost")
    assert start.parent == second.span_id
    assert _one(trace, "invocation-end UserFeed/{key}/processPost").parent == start.span_id
