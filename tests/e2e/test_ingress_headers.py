"""What a handler learns of the HTTP request that started it: the headers of its input."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from harness import Deployment, Server, sql_rows

from pyrestate.protocol import service_protocol_pb2 as pb


def test_the_input_carries_the_path_and_the_request_headers(
    server: Server, deployment: Callable[..., Deployment], http: httpx.Client
) -> None:
    deployment("control")
    resp = http.post(f"{server.ingress_url}/Steps/draw", json="h", headers={"x-mine": "1"})
    assert resp.status_code == 200, resp.text
    inv = resp.headers["x-restate-id"]
    (row,) = sql_rows(http, server, f"SELECT raw FROM sys_journal WHERE id = '{inv}' AND index = 0")
    entry = pb.InputCommandMessage.FromString(bytes.fromhex(row["raw"]))
    headers = [(h.key, h.value) for h in entry.headers]
    # As the official passes them: the path first, the transport's host left out.
    assert headers[0] == ("x-restate-ingress-path", "/Steps/draw")
    assert ("x-mine", "1") in headers and ("content-length", "3") in headers
    assert "host" not in dict(headers)
