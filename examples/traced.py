"""Spans a handler creates join the server's trace.

The server hands each attempt its trace context (``traceparent``); the SDK's
``RestateTracer`` parents the spans the handler creates under it, so a trace shows the
service's own work (here a price lookup) inside the attempt that did it. The service
exports its spans to ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (OTLP/HTTP) when that is set.
"""

from __future__ import annotations

import os

import restate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from restate import Context
from restate.ext.tracing import RestateTracer

provider = TracerProvider(resource=Resource({"service.name": "quotes"}))
if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
tracer = RestateTracer(provider.get_tracer("quotes"))

quotes = restate.Service("Quotes")


@quotes.handler()
async def quote(ctx: Context, item: str) -> int:
    def price() -> int:
        with tracer.start_as_current_span("price lookup", attributes={"item": item}):
            return 10 * len(item)

    return await ctx.run_typed("price", price)


app = restate.app(services=[quotes])
