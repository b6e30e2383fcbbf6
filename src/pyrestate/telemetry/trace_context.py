"""W3C trace context (``traceparent``/``tracestate``) and what an invocation keeps of its
trace: the core stores it as opaque text, only this module reads it.

As the official server does, an invocation's ``invocation-start`` span has a span id
known in advance (the last 8 bytes of the invocation's uuid), so its attempts can name it
as their parent at any time, also after a restart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from pyrestate.core.ids import InvocationId

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
MAX_TRACESTATE = 512  # the W3C limit


class TraceRef(NamedTuple):
    """An invocation's place in a trace.

    ``parent``: the span its ``invocation-start`` span hangs under (the ingress span, or
    the calling attempt's span), in trace ``trace_id``; with ``linked``, a span of that
    trace it only links to: a one-way send starts a trace of its own, whose id is the
    invocation's uuid. 0: none. (A tuple: made and read several times per invocation.)
    """

    trace_id: int
    parent: int
    sampled: bool = True
    state: str = ""
    linked: bool = False

    def own_trace(self, inv: InvocationId) -> int:
        """The id of the trace the invocation's spans are in."""
        return int.from_bytes(inv.uuid, "big") if self.linked else self.trace_id

    def text(self) -> str:
        flags = "01" if self.sampled else "00"
        kind = "l" if self.linked else "p"
        return f"{self.trace_id:032x}-{self.parent:016x}-{flags}-{kind}-{self.state}"

    @classmethod
    def parse(cls, text: str | None) -> TraceRef | None:
        if not text:
            return None
        parts = text.split("-", 4)
        if len(parts) != 5:
            return None
        try:
            return cls(
                int(parts[0], 16), int(parts[1], 16), parts[2] == "01", parts[4], parts[3] == "l"
            )
        except ValueError:
            return None


def start_span_id(inv: InvocationId) -> int:
    """The span id of an invocation's ``invocation-start`` span."""
    return int.from_bytes(inv.uuid[8:16], "big")


def parse_traceparent(value: str | None) -> tuple[int, int, bool] | None:
    """(trace id, parent span id, sampled) of a ``traceparent`` header, None if invalid."""
    if value is None:
        return None
    m = _TRACEPARENT.fullmatch(value.strip().lower())
    if m is None or m.group(1) == "ff":
        return None
    trace_id, span_id = int(m.group(2), 16), int(m.group(3), 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, bool(int(m.group(4), 16) & 1)


def traceparent(trace_id: int, span_id: int, sampled: bool = True) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def clean_tracestate(value: str | None) -> str:
    """A ``tracestate`` header kept as it came, if within bounds (else dropped)."""
    if not value or len(value) > MAX_TRACESTATE or not value.isprintable():
        return ""
    return value.strip()


class Sampler(NamedTuple):
    """Which new traces are recorded: OpenTelemetry's standard samplers, chosen the way
    the official server's OpenTelemetry SDK reads them (``OTEL_TRACES_SAMPLER`` and
    ``OTEL_TRACES_SAMPLER_ARG``; default ``parentbased_always_on``)."""

    ratio: float = 1.0  # always_on 1, always_off 0, traceidratio its argument
    parent_based: bool = True  # a sampled or unsampled parent decides, if there is one

    def sampled(self, trace_id: int, parent_sampled: bool | None) -> bool:
        """``parent_sampled``: the incoming context's flag, None without one."""
        if parent_sampled is not None and self.parent_based:
            return parent_sampled
        if self.ratio >= 1.0:
            return True
        # As the standard ratio sampler: the trace id's last 8 bytes, less their lowest
        # bit, below the ratio of 2^63.
        return (trace_id & _LOW64) >> 1 < int(max(self.ratio, 0.0) * _TWO_63)


_LOW64 = (1 << 64) - 1
_TWO_63 = float(1 << 63)
_SAMPLERS = {
    "always_on": (1.0, False),
    "always_off": (0.0, False),
    "traceidratio": (None, False),
    "parentbased_always_on": (1.0, True),
    "parentbased_always_off": (0.0, True),
    "parentbased_traceidratio": (None, True),
}


def sampler_from_env(env: Mapping[str, str]) -> tuple[Sampler, str | None]:
    """The sampler ``env`` names, and a warning if it names none known (the default is
    used then, as OpenTelemetry does)."""
    name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not name:
        return Sampler(), None
    if name not in _SAMPLERS:
        known = ", ".join(_SAMPLERS)
        return Sampler(), f"OTEL_TRACES_SAMPLER={name!r} is not one of {known}: sampling all"
    ratio, parent_based = _SAMPLERS[name]
    warning = None
    if ratio is None:
        arg = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
        try:
            ratio = float(arg)
        except ValueError:
            ratio = None
        if ratio is None or not 0.0 <= ratio <= 1.0:
            warning = f"OTEL_TRACES_SAMPLER_ARG={arg!r} is not a ratio from 0 to 1: using 1"
            ratio = 1.0
    return Sampler(ratio, parent_based), warning


class EndpointError(ValueError):
    pass


def otlp_transport(endpoint: str) -> tuple[str, str, bool]:
    """(``grpc`` or ``http``, where to send, secure) for a tracing endpoint, chosen by its
    scheme as the official server does: ``http(s)://`` and ``grpc://`` mean OTLP over
    gRPC, ``otlp+http(s)://`` OTLP/HTTP protobuf to the URL as given."""
    scheme, sep, rest = endpoint.partition("://")
    tokens = sorted(scheme.lower().split("+")) if sep and rest else []
    if tokens in (["http"], ["https"], ["grpc"], ["grpc", "otlp"]):
        return "grpc", rest, tokens == ["https"]
    if tokens in (["http", "otlp"], ["https", "otlp"], ["http", "otlp", "proto"]):
        secure = "https" in tokens
        return "http", f"{'https' if secure else 'http'}://{rest}", secure
    raise EndpointError(
        f"tracing endpoint {endpoint!r}: use http://, https:// or grpc:// for OTLP over "
        "gRPC, otlp+http:// or otlp+https:// for OTLP over HTTP"
    )
