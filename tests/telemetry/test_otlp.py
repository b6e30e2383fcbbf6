"""The hand-written OTLP encoding, read back with the official generated classes, and the
exporter's batches as a collector receives them."""

from __future__ import annotations

import sys
from pathlib import Path

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from pyrestate.telemetry import otlp

E2E_DIR = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from otlp_receiver import http_receiver  # noqa: E402


def test_a_span_reads_back_with_every_field() -> None:
    events = otlp.event(
        otlp.event_name("restate.invocation.lifecycle.new_command"),
        5,
        otlp.attributes(otlp.EVENT_ATTRIBUTE, [("restate.journal.command.type", "Command/Run")]),
    )
    links = otlp.link(
        7, 8, "a=1", otlp.attributes(otlp.LINK_ATTRIBUTE, [("restate.runtime", True)])
    )
    attrs = otlp.attributes(
        otlp.SPAN_ATTRIBUTE, [("s", "ünï"), ("n", 6), ("neg", -3), ("b", False), ("big", 2**62)]
    )
    raw = otlp.span(
        2**127 + 1,
        2**63 + 2,
        3,
        "k=v",
        otlp.name_field("invocation-attempt A/b"),
        10,
        20,
        attrs,
        events,
        links,
        otlp.STATUS_ERROR,
        "transient failure",
    )
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(
        otlp.export_request({"service.name": "Restate", "v": 1}, "services", [raw, raw])
    )
    (rs,) = request.resource_spans
    assert {
        kv.key: kv.value.string_value or kv.value.int_value for kv in rs.resource.attributes
    } == {
        "service.name": "Restate",
        "v": 1,
    }
    (ss,) = rs.scope_spans
    assert ss.scope.name == "services" and len(ss.spans) == 2
    s = ss.spans[0]
    assert int.from_bytes(s.trace_id, "big") == 2**127 + 1
    assert int.from_bytes(s.span_id, "big") == 2**63 + 2
    assert int.from_bytes(s.parent_span_id, "big") == 3
    assert (s.trace_state, s.name, s.kind) == ("k=v", "invocation-attempt A/b", 1)
    assert (s.start_time_unix_nano, s.end_time_unix_nano) == (10, 20)
    values = {kv.key: kv.value for kv in s.attributes}
    assert values["s"].string_value == "ünï" and values["n"].int_value == 6
    assert values["neg"].int_value == -3 and values["big"].int_value == 2**62
    assert values["b"].HasField("bool_value") and values["b"].bool_value is False
    (ev,) = s.events
    assert (ev.name, ev.time_unix_nano) == ("restate.invocation.lifecycle.new_command", 5)
    assert ev.attributes[0].value.string_value == "Command/Run"
    (ln,) = s.links
    assert int.from_bytes(ln.trace_id, "big") == 7 and int.from_bytes(ln.span_id, "big") == 8
    assert ln.trace_state == "a=1" and ln.attributes[0].value.bool_value is True
    assert (s.status.code, s.status.message) == (2, "transient failure")


def test_a_root_span_has_no_parent_and_an_ok_status() -> None:
    raw = otlp.span(1, 2, 0, "", otlp.name_field("x"), 1, 1, b"", status=otlp.STATUS_OK)
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.ParseFromString(otlp.export_request({}, "services", [raw]))
    s = request.resource_spans[0].scope_spans[0].spans[0]
    assert s.parent_span_id == b"" and s.status.code == 1 and s.trace_state == ""


def test_the_exporter_sends_in_batches_and_everything_at_shutdown() -> None:
    receiver_gen = http_receiver()
    receiver, endpoint = next(receiver_gen)
    env = {"OTEL_BSP_SCHEDULE_DELAY": "60000", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "3"}
    exporter = otlp.Exporter(
        "http", endpoint.removeprefix("otlp+"), False, {"x-key": "k"}, {"a": "b"}, "services", env
    )
    try:
        for i in range(4):
            exporter.add(otlp.span(1, i + 1, 0, "", otlp.name_field(f"s{i}"), 1, 2, b""))
        # A full batch leaves at once, not after the (long) schedule.
        got = receiver.wait_for(lambda spans: len(spans) >= 3, timeout=10)
        assert [s.name for s in got] == ["s0", "s1", "s2"]
        assert receiver.headers[0]["x-key"] == "k"
        assert receiver.headers[0]["content-type"] == "application/x-protobuf"
    finally:
        exporter.shutdown()
        assert [s.name for s in receiver.snapshot()] == ["s0", "s1", "s2", "s3"]
        assert receiver.snapshot()[0].resource == {"a": "b"}
        receiver_gen.close()


def test_a_full_queue_drops_spans_instead_of_waiting() -> None:
    env = {"OTEL_BSP_SCHEDULE_DELAY": "60000", "OTEL_BSP_MAX_QUEUE_SIZE": "2"}
    exporter = otlp.Exporter("http", "http://127.0.0.1:9/", False, {}, {}, "services", env)
    try:
        for i in range(5):
            exporter.add(otlp.span(1, i + 1, 0, "", otlp.name_field("s"), 1, 2, b""))
        assert exporter.dropped == 3
    finally:
        exporter.shutdown(1.0)


def test_resource_attributes_from_the_environment_win() -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod,service.name=x%20y"}
    got = otlp.resource_from_env({"service.name": "Restate", "v": "1"}, env)
    assert got == {"service.name": "x y", "v": "1", "deployment.environment": "prod"}
