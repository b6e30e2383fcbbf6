"""Which traces are recorded: the standard OpenTelemetry samplers read from the
environment as the official server's SDK reads them, applied where a trace begins."""

from __future__ import annotations

import os

from pyrestate.core.model import ServiceType, Target
from pyrestate.telemetry.trace_context import Sampler, TraceRef, sampler_from_env
from pyrestate.telemetry.tracing import Tracer

TARGET = Target("Greeter", "greet", None, ServiceType.SERVICE, None)
TRACE = "0af7651916cd43dd8448eb211c80319c"


class Collected:
    def __init__(self) -> None:
        self.spans: list[bytes] = []

    def add(self, span: bytes) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        pass


def tracer(env: dict[str, str]) -> tuple[Tracer, Collected]:
    sampler, _ = sampler_from_env(env)
    out = Collected()
    return Tracer(out, sampler=sampler), out  # type: ignore[arg-type]


def ingress(t: Tracer, headers: dict[str, str] | None = None) -> str | None:
    inv = TARGET.new_invocation_id(os.urandom(24))
    return t.ingress(inv, TARGET, headers or {}, None)


def test_the_default_records_every_trace_and_follows_the_callers_choice() -> None:
    t, out = tracer({})
    assert all(ingress(t) for _ in range(100)) and len(out.spans) == 100
    assert ingress(t, {"traceparent": f"00-{TRACE}-b7ad6b7169203331-00"}) is None
    kept = ingress(t, {"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"})
    assert kept is not None and TraceRef.parse(kept).trace_id == int(TRACE, 16)  # type: ignore[union-attr]


def test_always_off_records_nothing_and_parentbased_off_only_what_callers_sample() -> None:
    t, out = tracer({"OTEL_TRACES_SAMPLER": "always_off"})
    assert ingress(t) is None
    assert ingress(t, {"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}) is None
    t2, _ = tracer({"OTEL_TRACES_SAMPLER": "parentbased_always_off"})
    assert ingress(t2) is None
    assert ingress(t2, {"traceparent": f"00-{TRACE}-b7ad6b7169203331-01"}) is not None
    inv = TARGET.new_invocation_id(os.urandom(24))
    assert t.kafka_ingress(inv, TARGET, "group", "topic", 0, 7) is None
    assert out.spans == []


def test_a_ratio_keeps_about_that_share_of_new_traces() -> None:
    t, out = tracer({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"})
    kept = sum(ingress(t) is not None for _ in range(4000))
    assert 800 < kept < 1200 and len(out.spans) == kept
    # The decision is the trace id's: the same trace is kept or dropped everywhere.
    sampler = Sampler(0.25, parent_based=False)
    assert sampler.sampled(0x0, None) and not sampler.sampled((1 << 64) - 1, None)
    assert sampler.sampled(int(TRACE, 16), True) == sampler.sampled(int(TRACE, 16), False)


def test_unknown_samplers_and_bad_ratios_are_named_and_sample_all() -> None:
    sampler, warning = sampler_from_env({"OTEL_TRACES_SAMPLER": "sometimes"})
    assert sampler == Sampler() and warning and "'sometimes'" in warning
    sampler, warning = sampler_from_env(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}
    )
    assert sampler == Sampler(1.0, True) and warning and "'2'" in warning
    assert sampler_from_env({"OTEL_TRACES_SAMPLER": "TraceIdRatio"}) == (Sampler(1.0, False), None)
