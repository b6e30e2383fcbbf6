"""The server's logs, end to end: one line per notable event (start, registration, an
attempt failing and being retried, an invocation paused, stop), `--log-format json` lines
that all parse, and no secret in them, at debug level too.

Services: examples/lifecycle.py (`Pauser/alwaysFails` fails twice, then is paused by its
retry policy; `Brief/hello` answers). The failure and pause lines are the official
server's own (`restate_invoker_impl`): that test runs against it too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from harness import Deployment, Server, sql_rows, target, wait_services_ready, wait_until

# The server's own surface: the same with any SDK version or transport (run once).
pytestmark = pytest.mark.server_only

pyrestate_only = pytest.mark.skipif(
    target() == "official", reason="the official logs no registration and no stop duration"
)

Record = dict[str, Any]


@pytest.fixture
def server_options() -> dict[str, Any]:
    return {"extra_args": ["--log-format", "json"]}


def _records(server: Server) -> list[Record]:
    """Every record the server logged; each line must be one JSON object."""
    records = []
    for line in server.log_path.read_text().splitlines():
        if line and not line.startswith("===== starting "):  # the harness's own lines
            records.append(json.loads(line))
    return records


def _with_message(server: Server, prefix: str) -> list[Record]:
    return [r for r in _records(server) if r["fields"].get("message", "").startswith(prefix)]


@pyrestate_only
def test_start_registration_and_stop_lines(
    server: Server, deployment: Callable[..., Deployment]
) -> None:
    dep = deployment("lifecycle")
    server.stop()
    (start,) = _with_message(server, "Starting Restate Server ")
    assert start["level"] == "INFO"
    (registered,) = _with_message(server, "Deployment registered")
    assert registered["level"] == "INFO"
    assert registered["target"] == "pyrestate.admin"
    fields = registered["fields"]
    assert fields["restate.deployment.id"] == dep.registration["id"]
    assert fields["restate.deployment.address"].startswith(dep.url)
    assert {"Pauser", "Brief"} <= set(fields["restate.deployment.services"])
    (stopped,) = _with_message(server, "Restate has gracefully shutdown in ")
    assert stopped["level"] == "INFO"


def test_a_failed_attempt_and_a_pause_are_logged_with_the_invocation_and_error(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    dep = deployment("lifecycle")
    resp = http.post(f"{server.ingress_url}/Pauser/alwaysFails/send", json="logs")
    assert resp.status_code == 202, resp.text
    inv = resp.json()["invocationId"]

    def paused() -> bool:
        rows = sql_rows(http, server, f"SELECT status FROM sys_invocation WHERE id = '{inv}'")
        return rows == [{"status": "paused"}]

    wait_until(paused, timeout=30, what="the invocation paused")
    pause_message = "Error when executing the invocation, pausing the invocation."
    # Logged once the pause is committed, which is also when SQL shows it: soon after.
    (pause,) = wait_until(
        lambda: _with_message(server, pause_message), timeout=10, what="the pause line"
    )
    (retry,) = _with_message(server, "Invocation error, retrying in ")
    for record in (retry, pause):
        assert record["level"] == "WARN"
        fields = record["fields"]
        assert fields["restate.invocation.id"] == inv
        assert fields["restate.invocation.target"] == "Pauser/alwaysFails"
        assert fields["restate.deployment.id"] == dep.registration["id"]
        assert fields["restate.error.code"] == "RT0007"
        assert "[500 Internal]" in fields["error"]
        assert "always fails" in fields["error"]  # the handler's own message
    # The policy waits 50 ms, less what passed since (the official adds microseconds).
    assert re.fullmatch(
        r"Invocation error, retrying in (0s|\d+ms( \d+µs)?)\.", retry["fields"]["message"]
    )


# The official's probe found none of these in its logs either.
SECRETS = {"authorization": "Bearer s3cret-token", "x-api-key": "k3y-123"}


@pyrestate_only
@pytest.mark.parametrize("server_options", [{"extra_args": ["--log-filter", "debug"]}])
def test_no_secret_is_logged_at_debug_level(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    dep = deployment("lifecycle", do_register=False)
    body = {"uri": dep.url, "additional_headers": SECRETS}
    resp = http.post(f"{server.admin_url}/deployments", json=body, timeout=30)
    assert resp.status_code == 201, resp.text
    dep_id = resp.json()["id"]
    wait_services_ready(http, server, ["Brief"])
    # Invocations carry the headers too (HTTP/2: through hpack, which logs headers).
    answer = http.post(f"{server.ingress_url}/Brief/hello", json="logs")
    assert answer.status_code == 200, answer.text
    # An update sends them to discovery again and logs the deployment again.
    patch = http.patch(
        f"{server.admin_url}/deployments/{dep_id}", json={"additional_headers": SECRETS}
    )
    assert patch.status_code == 200, patch.text
    server.stop()
    text = server.log_path.read_text()
    assert f"Deployment registered restate.deployment.id={dep_id}" in text
    assert f"Deployment updated restate.deployment.id={dep_id}" in text
    for secret in ("s3cret", "k3y-123"):
        assert secret not in text
