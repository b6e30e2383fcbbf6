"""Prometheus metrics at the admin port's ``/metrics`` count what a small workload did:
calls of the counter, an invocation retried twice, a terminal failure, a delayed send.

The official server serves its metrics on the node port instead (which the harness does
not expose), so these run against pyrestate only.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from harness import Deployment, Server

TELEMETRY_TESTS = Path(__file__).resolve().parents[1] / "telemetry"
if str(TELEMETRY_TESTS) not in sys.path:
    sys.path.insert(0, str(TELEMETRY_TESTS))

from prometheus_text import samples, value  # noqa: E402

# The server's own surface: the same with any SDK version or transport (run once).
pytestmark = pytest.mark.server_only


def test_metrics_count_the_invocations_attempts_and_requests_that_ran(
    server: Server, deployment: Callable[..., Deployment], http: httpx.Client
) -> None:
    if server.kind == "official":
        pytest.skip("the official server serves its metrics on the node port, not on admin")
    deployment("durability")
    counter = deployment("counter")
    ingress = server.ingress_url
    resp = http.post(f"{ingress}/Flaky/run", json="metrics", timeout=60)
    assert resp.status_code == 200 and resp.json()["attempt"] == 3, resp.text
    resp = http.post(f"{ingress}/Faulty/terminal", json={"tag": "metrics", "code": 409})
    assert resp.status_code == 409, resp.text
    resp = http.post(f"{ingress}/Counter/later/add/send?delay=1h", json=1)
    assert resp.status_code == 202, resp.text
    for n in (1, 2, 3):
        resp = http.post(f"{ingress}/Counter/k/add", json=1)
        assert resp.status_code == 200 and resp.json() == n, resp.text

    resp = http.get(f"{server.admin_url}/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    assert "# TYPE restate_ingress_request_duration_seconds histogram" in resp.text
    s = samples(resp.text)

    done = "restate_invocations_completed_total"
    assert value(s, done, service="Counter", result="success") == 3
    assert value(s, done, service="Flaky", result="success") == 1
    assert value(s, done, service="Faulty", result="failure") == 1
    assert value(s, "restate_invocation_duration_seconds_count", service="Counter") == 3
    assert value(s, "restate_invocation_duration_seconds_sum", service="Counter") > 0
    # Two failed attempts, each retried; a third that succeeded.
    assert value(s, "restate_invocation_retries_total", service="Flaky") == 2
    assert value(s, "restate_invocation_attempts_total", service="Flaky") >= 3
    assert value(s, "restate_invocation_attempts_total", service="Counter") >= 3
    tasks = "restate_invoker_invocation_tasks_total"
    assert value(s, tasks, status="failed", transient="true") == 2
    started = value(s, tasks, status="started")
    assert started >= 3 + 3 + 1
    # Reported by the invoker as each attempt ends: the three adds, Flaky's last attempt
    # and Faulty's (a terminal error is an output) ended; every attempt started has ended.
    assert value(s, tasks, status="completed") == 5
    assert value(s, "restate_invoker_task_duration_seconds_count") == started
    # The delayed send waits in storage; nothing else is left unfinished.
    live = "restate_invocations"
    assert value(s, live, service="Counter", status="scheduled") == 1
    assert sum(x.value for x in s if x.name == live and x.labels["status"] != "scheduled") == 0

    req = "restate_ingress_requests_total"
    assert value(s, req, status="completed", rpc_service="Counter", rpc_type="call") == 3
    assert value(s, req, status="completed", rpc_service="Counter", rpc_type="send") == 1
    assert value(s, req, status="completed", rpc_service="Flaky", rpc_type="call") == 1
    assert value(s, req, status="invocation_error", rpc_service="Faulty", rpc_type="call") == 1
    assert value(s, req, status="admitted") == 6
    latency = "restate_ingress_request_duration_seconds_count"
    assert value(s, latency, rpc_service="Counter", rpc_type="call") == 3
    codes = "restate_ingress_http_requests_total"
    assert value(s, codes, code="200") >= 4  # the harness's health checks come on top
    assert value(s, codes, code="202") == 1
    assert value(s, codes, code="409") == 1

    commits = value(s, "restate_partition_commit_duration_seconds_count")
    assert commits > 0
    assert value(s, "restate_partition_commit_batch_size_sum") >= commits
    assert value(s, "restate_partition_queue_depth") == 0
    if not counter.in_process:
        # The counter's connection is idle, and open, right after its last call.
        open_to_counter = [
            x.value
            for x in s
            if x.name == "restate_deployment_connections"
            and x.labels["address"].startswith(counter.url)
        ]
        assert sum(open_to_counter) >= 1, open_to_counter
    assert {x.labels["cluster_name"] for x in s} == {"localcluster"}
    assert all(x.labels.get("node_name") for x in s)
