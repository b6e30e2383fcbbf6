"""What an invocation keeps of its trace, and the W3C headers it is read from."""

from __future__ import annotations

import pytest

from pyrestate.core.ids import InvocationId
from pyrestate.telemetry.trace_context import (
    EndpointError,
    TraceRef,
    clean_tracestate,
    otlp_transport,
    parse_traceparent,
    start_span_id,
    traceparent,
)


def test_a_trace_ref_survives_its_text_form() -> None:
    for ref in (
        TraceRef(2**127 + 5, 7, True, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        TraceRef(1, 0, False),
        TraceRef(3, 2**63, True, "", linked=True),
    ):
        assert TraceRef.parse(ref.text()) == ref
    assert TraceRef.parse(None) is None and TraceRef.parse("nonsense") is None


def test_traceparent_headers_are_read_strictly() -> None:
    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert parse_traceparent(header) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        True,
    )
    assert traceparent(*parse_traceparent(header)) == header  # type: ignore[misc]
    assert parse_traceparent(header[:-2] + "00") == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        False,
    )
    for bad in (
        None,
        "",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        "00-xyz-b7ad6b7169203331-01",
    ):
        assert parse_traceparent(bad) is None, bad


def test_the_start_span_id_is_the_end_of_the_invocation_uuid() -> None:
    # As observed of the official server (docs/official-1.7.12-probe-telemetry.md, 2.4).
    inv = InvocationId.parse("inv_1foAirY4KKzi0gh85KvFEWKxmEsGbwgKVC")
    assert f"{start_span_id(inv):016x}" == "06e1033a2b28a008"


def test_tracestate_is_kept_within_bounds_only() -> None:
    assert clean_tracestate(" a=1,b=2 ") == "a=1,b=2"
    assert clean_tracestate("x" * 513) == "" and clean_tracestate("a=\x00") == ""


@pytest.mark.parametrize(
    ("endpoint", "transport"),
    [
        ("http://127.0.0.1:4317", ("grpc", "127.0.0.1:4317", False)),
        ("https://collector:4317", ("grpc", "collector:4317", True)),
        ("grpc://127.0.0.1:4317", ("grpc", "127.0.0.1:4317", False)),
        ("otlp+http://h:4318/v1/traces", ("http", "http://h:4318/v1/traces", False)),
        ("otlp+https://h/v1/traces", ("http", "https://h/v1/traces", True)),
    ],
)
def test_the_scheme_picks_the_transport_as_officially(
    endpoint: str, transport: tuple[str, str, bool]
) -> None:
    assert otlp_transport(endpoint) == transport


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4317", "foo://h:1", "http://", ""])
def test_other_endpoints_are_refused_by_name(endpoint: str) -> None:
    with pytest.raises(EndpointError, match="use http://"):
        otlp_transport(endpoint)
