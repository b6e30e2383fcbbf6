"""`pyrestate status | deployments ... | services ...` against a real server.

Run with PYRESTATE_E2E_TARGET=official to prove them on the official server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import httpx
from clirun import run, run_json
from harness import REPO_ROOT, Deployment, Server, free_port
from typer.testing import CliRunner

from pyrestate.cli.main import app

DeploymentFactory = Callable[..., Deployment]


def test_unreachable_server_is_one_line_naming_the_url_and_env_var() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.endswith("ADMIN_URL")}
    done = subprocess.run(
        [sys.executable, "-m", "pyrestate", "services", "list", "--admin-url", url],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: cannot reach the admin API at " + url), line
    assert "PYRESTATE_ADMIN_URL" in line and "Traceback" not in done.stderr


def test_admin_url_comes_from_flag_then_env_vars() -> None:
    dead = [f"http://127.0.0.1:{p}" for p in (free_port(), free_port())]
    env = {"PYRESTATE_ADMIN_URL": dead[0], "RESTATE_ADMIN_URL": dead[1]}
    # Both set: ours wins; only the official CLI's variable: it is honoured.
    assert dead[0] in CliRunner().invoke(app, ["status"], env=env).stderr
    only_official = {**env, "PYRESTATE_ADMIN_URL": None}
    assert dead[1] in CliRunner().invoke(app, ["status"], env=only_official).stderr
    # Neither: the default local admin port (a flag overrides them all, see clirun.run).
    none = {"PYRESTATE_ADMIN_URL": None, "RESTATE_ADMIN_URL": None}
    help_text = CliRunner().invoke(app, ["status", "--help"], env=none).stdout
    assert "http://localhost:9070" in help_text


def test_status_shows_health_and_version(server: Server) -> None:
    out = run(server, "status").stdout
    assert f"{server.admin_url} is healthy" in out
    assert "Server version" in out
    status = run_json(server, "status")
    assert status["healthy"] is True and status["admin_url"] == server.admin_url
    assert isinstance(status["version"], str) and status["version"]


def test_register_list_describe_and_remove_deployments(
    server: Server, deployment: DeploymentFactory
) -> None:
    dep = deployment("counter", http1=True, do_register=False)
    registered = run(server, "deployments", "register", dep.url, "--use-http1.1").stdout
    assert "Registered deployment dp_" in registered and "Counter" in registered
    (listed,) = run_json(server, "deployments", "list")
    dp_id = listed["id"]
    assert listed["uri"].rstrip("/") == dep.url
    assert [s["name"] for s in listed["services"]] == ["Counter"]
    table = run(server, "deployments", "list").stdout
    assert dp_id in table and dep.url in table and "Counter [1]" in table

    described = run(server, "deployments", "describe", dp_id).stdout
    assert dp_id in described and "HTTP/1.1" in described and "Counter" in described
    assert run_json(server, "deployments", "describe", dp_id)["http_version"] == "HTTP/1.1"
    # Registering again replaces it only when forced; the service is still there after.
    forced = run(server, "deployments", "register", dep.url, "--use-http1.1", "--force")
    assert "Registered deployment dp_" in forced.stdout
    (listed,) = run_json(server, "deployments", "list")
    dp_id = listed["id"]

    unknown = run(server, "deployments", "describe", "dp_10zeLBJCiBXCQMPmVJ5Lfyh", code=1)
    assert unknown.stderr.startswith("error: GET /deployments/dp_10zeLBJCiBXCQMPmVJ5Lfyh ")
    assert "404" in unknown.stderr
    refused = run(server, "deployments", "remove", dp_id, code=2)
    assert "--force" in refused.stderr
    assert run(server, "deployments", "remove", dp_id, "--force").stdout.startswith(
        f"Removed deployment {dp_id}"
    )
    assert run_json(server, "deployments", "list") == []


def test_services_list_and_describe(server: Server, deployment: DeploymentFactory) -> None:
    dep = deployment("counter")
    table = run(server, "services", "list").stdout
    assert "Counter" in table and "VirtualObject" in table and dep.registration["id"] in table
    (counter,) = run_json(server, "services", "list")
    assert counter["name"] == "Counter" and counter["ty"] == "VirtualObject"

    described = run(server, "services", "describe", "Counter").stdout
    for expected in ("VirtualObject", "add", "get", "slowAdd", "Exclusive", "Shared"):
        assert expected in described, (expected, described)
    handlers = run_json(server, "services", "describe", "Counter")["handlers"]
    assert {h["name"] for h in handlers} == {"add", "get", "reset", "slowAdd"}

    missing = run(server, "services", "describe", "Nope", code=1)
    assert missing.stderr.startswith("error: GET /services/Nope failed with 404")
    assert missing.stdout == ""


def test_services_config_view_and_edit(
    server: Server, deployment: DeploymentFactory, http: httpx.Client
) -> None:
    deployment("counter")
    before = run_json(server, "services", "config", "view", "Counter")
    assert before["public"] is True
    assert set(before) >= {"idempotency_retention", "inactivity_timeout", "abort_timeout"}
    assert "Idempotency retention" in run(server, "services", "config", "view", "Counter").stdout

    edited = run_json(
        server,
        "services",
        "config",
        "edit",
        "Counter",
        "--private",
        "--idempotency-retention",
        "2h",
        "--journal-retention",
        "30m",
        "--inactivity-timeout",
        "90s",
        "--abort-timeout",
        "5m",
    )
    after = run_json(server, "services", "config", "view", "Counter")
    assert edited == after
    assert after["public"] is False
    assert (after["idempotency_retention"], after["journal_retention"]) == ("2h", "30m")
    assert (after["inactivity_timeout"], after["abort_timeout"]) == ("1m 30s", "5m")
    # Private: the ingress refuses it now.
    assert http.post(f"{server.ingress_url}/Counter/k/add", json=1).status_code >= 400
    shown = run(server, "services", "config", "edit", "Counter", "--public").stdout
    assert "Public:" in shown and "true" in shown
    assert http.post(f"{server.ingress_url}/Counter/k/add", json=1).json() == 1

    nothing = run(server, "services", "config", "edit", "Counter", code=2)
    assert "nothing to change" in nothing.stderr
    bad = run(server, "services", "config", "edit", "Counter", "--abort-timeout", "soon", code=1)
    # The official server answers 422 (its JSON body parser refuses the duration).
    assert bad.stderr.startswith("error: PATCH /services/Counter failed with 4")
    assert "soon" in bad.stderr or "duration" in bad.stderr
