"""Lifecycle end to end: crashes while a caller waits, while backing off and while paused;
a deployment dying mid-invocation; inactivity and abort timeouts; retention; pinned
deployments after a new registration; service protocol V5.

Services: examples/lifecycle.py. Marker files count what really executed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from harness import Deployment, Server, register, sql_rows, wait_services_ready, wait_until


def _lines(count_dir: Path, name: str) -> list[str]:
    try:
        return (count_dir / name).read_text().splitlines()
    except FileNotFoundError:
        return []


def _send(http: httpx.Client, server: Server, path: str, body: object) -> str:
    resp = http.post(f"{server.ingress_url}/{path}/send", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()["invocationId"]


def _attach(http: httpx.Client, server: Server, inv: str) -> httpx.Response:
    return http.get(f"{server.ingress_url}/restate/invocation/{inv}/attach", timeout=90)


def _status(http: httpx.Client, server: Server, inv: str) -> str:
    """The invocation's status as the admin API's SQL shows it."""
    (row,) = sql_rows(http, server, f"SELECT status FROM sys_invocation WHERE id = '{inv}'")
    return row["status"]


def _output_status(http: httpx.Client, server: Server, inv: str) -> int:
    return http.get(f"{server.ingress_url}/restate/invocation/{inv}/output").status_code


def test_a_caller_waiting_on_its_callee_survives_a_crash(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    count_dir: Path,
) -> None:
    deployment("lifecycle")
    inv = _send(http, server, "Waiter/callSlow", {"tag": "c1", "millis": 2000})
    wait_until(lambda: _lines(count_dir, "slow-c1.log"), timeout=30, what="callee running")
    server.kill()
    server.start()
    resp = _attach(http, server, inv)
    assert resp.status_code == 200, resp.text
    assert resp.json() == "caller got: worked c1"


def test_an_invocation_backing_off_survives_a_crash(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    count_dir: Path,
) -> None:
    deployment("lifecycle")
    inv = _send(http, server, "Backoff/failOnce", "b1")
    wait_until(lambda: _lines(count_dir, "backoff-b1.attempts"), timeout=30, what="1st attempt")
    server.kill()  # within its 3 s backoff
    assert len(_lines(count_dir, "backoff-b1.attempts")) == 1
    server.start()
    resp = _attach(http, server, inv)
    assert resp.status_code == 200, resp.text
    assert resp.json() == 2
    assert len(_lines(count_dir, "backoff-b1.attempts")) == 2


def test_a_paused_invocation_stays_paused_across_a_crash(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    count_dir: Path,
) -> None:
    deployment("lifecycle")
    inv = _send(http, server, "Pauser/alwaysFails", "p1")
    attempts = "pauser-p1.attempts"
    wait_until(lambda: len(_lines(count_dir, attempts)) >= 2, timeout=30, what="2 attempts")
    time.sleep(1.0)
    assert len(_lines(count_dir, attempts)) == 2, "paused after max attempts, not retried"
    assert _status(http, server, inv) == "paused"
    server.kill()
    server.start()
    time.sleep(2.0)
    assert len(_lines(count_dir, attempts)) == 2, "a restart does not resume a paused one"
    assert _status(http, server, inv) == "paused"
    assert _output_status(http, server, inv) == 470


def test_a_stalled_attempt_is_aborted_by_the_timeouts_and_retried(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    count_dir: Path,
) -> None:
    deployment("lifecycle")
    resp = http.post(f"{server.ingress_url}/Stalled/stall", json="s1", timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json() == 2, "the hanging first attempt was aborted and a second ran"
    assert len(_lines(count_dir, "stalled-s1.attempts")) == 2


@pytest.mark.own_process("the test kills the deployment's process")
def test_a_deployment_dying_mid_invocation_is_retried(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    count_dir: Path,
) -> None:
    dep = deployment("lifecycle")
    inv = _send(http, server, "Slow/work", {"tag": "d1", "millis": 2000})
    wait_until(lambda: _lines(count_dir, "slow-d1.log"), timeout=30, what="handler running")
    dep.stop()
    dep.start()
    resp = _attach(http, server, inv)
    assert resp.status_code == 200, resp.text
    assert resp.json() == "worked d1"
    assert _lines(count_dir, "slow-d1.log") == ["start", "start"]


def test_a_completed_invocation_is_removed_after_its_retention(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
) -> None:
    deployment("lifecycle")
    resp = http.post(
        f"{server.ingress_url}/Brief/hello", json="r", headers={"idempotency-key": "r1"}
    )
    assert resp.status_code == 200, resp.text
    inv = resp.headers["x-restate-id"]
    assert _output_status(http, server, inv) == 200
    # 1 s of retention, then whenever the server sweeps.
    wait_until(
        lambda: _output_status(http, server, inv) == 404, timeout=30, what="invocation purged"
    )
    by_key = http.get(f"{server.ingress_url}/restate/invocation/Brief/hello/r1/output")
    assert by_key.status_code == 404


@pytest.mark.own_process("two versions of one module, told apart by their environment")
def test_a_running_invocation_stays_on_the_deployment_it_started_on(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYRESTATE_E2E_VERSION", "v1")
    deployment("lifecycle")
    inv = _send(http, server, "Pinned/which", 3000)
    time.sleep(1.0)  # started, and sleeping durably
    monkeypatch.setenv("PYRESTATE_E2E_VERSION", "v2")
    deployment("lifecycle")
    new = http.post(f"{server.ingress_url}/Pinned/which", json=0, timeout=30)
    assert new.status_code == 200 and new.json() == "v2", new.text
    resp = _attach(http, server, inv)
    assert resp.status_code == 200 and resp.json() == "v1", resp.text


def test_service_protocol_v5_end_to_end(
    server: Server, http: httpx.Client, tmp_path: Path, count_dir: Path
) -> None:
    dep = Deployment("examples.lifecycle:v5_app", tmp_path, count_dir)
    dep.start()
    try:
        resp = register(http, server.admin_url, dep.url)
        assert resp.status_code == 201, resp.text
        assert resp.json()["max_protocol_version"] == 5
        wait_services_ready(http, server, ["Waiter", "Slow"])
        out = http.post(
            f"{server.ingress_url}/Waiter/callSlow", json={"tag": "v5", "millis": 10}, timeout=30
        )
        assert out.status_code == 200 and out.json() == "caller got: worked v5", out.text
        # Both the caller's and the callee's attempts spoke V5.
        used = _lines(count_dir, "v5-app.content-types")
        assert len(used) >= 2 and set(used) == {"application/vnd.restate.invocation.v5"}, used
    finally:
        dep.stop()
