"""An OTLP/gRPC trace collector that counts spans and keeps none: the receiving end of
bench/tracing.py, in a process of its own.

    python bench/otlp_sink.py PORT COUNT_FILE

Lean on purpose (it shares the cores with what is measured): requests arrive as bytes,
are parsed once to count their spans, and the count is written to COUNT_FILE every half
second and at exit, not once per request.
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


def main() -> None:
    port, count_file = int(sys.argv[1]), Path(sys.argv[2])
    lock = threading.Lock()
    count = [0]
    empty = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()

    def export(body: bytes, context: Any) -> bytes:
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        n = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
        with lock:
            count[0] += n
        return empty

    # No (de)serializers: the handler gets and returns bytes.
    handler = grpc.method_handlers_generic_handler(
        _SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(export)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    written = -1
    while True:
        stopping = stop.wait(0.5)
        if count[0] != written:
            written = count[0]
            count_file.write_text(str(written))
        if stopping:
            break
    server.stop(1)


if __name__ == "__main__":
    main()
