"""The official `restate` CLI 1.7.12 (npm, installed by scripts/setup.sh) against the server.

Every command an operator uses in the Restate docs and tours runs unchanged and prints
what it prints against the official server: services, deployments, invocations (with
their journals), state (get, edit, clear) and SQL. PYRESTATE_E2E_TARGET=official runs
the same commands against the official server, which proves the expectations.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from harness import REPO_ROOT, Deployment, Server, register, wait_until

# The server's own surface: the same with any SDK version or transport (run once).
pytestmark = pytest.mark.server_only

_ARCH = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "x64")
CLI = REPO_ROOT / ".tools" / "node_modules" / "@restatedev" / f"restate-linux-{_ARCH}" / "bin"
CLI_BINARY = CLI / "restate"

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def restate(server: Server, tmp_path: Path) -> Run:
    """Runs the official CLI against the server under test; asserts it exits 0."""
    assert CLI_BINARY.exists(), f"{CLI_BINARY} missing: run scripts/setup.sh"
    env = {
        **os.environ,
        "RESTATE_ADMIN_URL": server.admin_url,
        "RESTATE_INGRESS_URL": server.ingress_url,
        "RESTATE_CLI_CONFIG_HOME": str(tmp_path / "cli-config"),
        "CI": "1",  # confirms prompts
        "NO_COLOR": "1",
        "COLUMNS": "250",
    }

    def run(*args: str, check: bool = True, **extra_env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(CLI_BINARY), *args],
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check:
            assert done.returncode == 0, f"restate {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    return run


def _send(http: httpx.Client, server: Server, path: str, body: object) -> str:
    resp = http.post(f"{server.ingress_url}/{path}/send", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()["invocationId"]


def test_services_deployments_and_whoami(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    restate: Run,
) -> None:
    counter = deployment("counter")
    dp = counter.registration["id"]
    assert "is healthy" in restate("whoami").stdout
    listed = restate("services", "list").stdout
    assert "Counter" in listed and dp in listed
    described = restate("services", "describe", "Counter").stdout
    assert "add" in described and "get" in described and "VirtualObject" in described
    assert "Counter" in restate("services", "config", "view", "Counter").stdout
    assert http.post(f"{server.ingress_url}/Counter/k1/add", json=3).status_code == 200
    assert "add" in restate("services", "status", "Counter").stdout

    assert dp in restate("deployments", "list").stdout
    assert "Counter" in restate("deployments", "describe", dp).stdout
    # A second deployment registered through the CLI (dry run first, as it does), removed.
    other = deployment("control", do_register=False)
    restate("deployments", "register", other.url, "--yes")
    second = register(http, server.admin_url, other.url).json()["id"]
    assert second in restate("deployments", "list").stdout
    restate("deployments", "remove", second, "--force", "--yes")
    assert second not in restate("deployments", "list").stdout


def test_invocations_list_describe_cancel_kill_purge(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    restate: Run,
) -> None:
    deployment("control")
    napping = _send(http, server, "Child/nap", "a")
    other = _send(http, server, "Child/nap", "b")
    wait_until(
        lambda: napping in restate("invocations", "list").stdout,
        timeout=30,
        what="a running invocation listed",
    )
    described = restate("invocations", "describe", napping).stdout
    assert "Child/nap" in described and "Sleep" in described, described
    cancelled = restate("invocations", "cancel", napping, "--yes").stdout
    assert "Cancelled 1 invocations" in cancelled or "1 invocation" in cancelled, cancelled
    attach = http.get(f"{server.ingress_url}/restate/invocation/{napping}/attach", timeout=30)
    assert attach.status_code == 409 and attach.json()["message"] == "cancelled"
    restate("invocations", "kill", other, "--yes")
    killed = http.get(f"{server.ingress_url}/restate/invocation/{other}/attach", timeout=30)
    assert killed.status_code == 409 and killed.json()["message"] == "killed"
    restate("invocations", "purge", other, "--yes")
    output = http.get(f"{server.ingress_url}/restate/invocation/{other}/output")
    assert output.status_code == 404


def test_state_get_edit_clear_and_sql(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    restate: Run,
    tmp_path: Path,
) -> None:
    deployment("counter")
    assert http.post(f"{server.ingress_url}/Counter/k1/add", json=10).json() == 10
    got = restate("kv", "get", "Counter", "k1").stdout
    assert "count" in got and "10" in got, got
    # `state edit` opens $EDITOR on the state as JSON; this editor sets the count to 42.
    editor = tmp_path / "editor.py"
    editor.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "path = sys.argv[-1]\n"
        "doc = json.load(open(path))\n"
        "doc['count'] = 42\n"
        "json.dump(doc, open(path, 'w'))\n"
    )
    editor.chmod(0o755)
    restate("state", "edit", "Counter", "k1", EDITOR=str(editor))
    count = lambda: http.get(f"{server.ingress_url}/Counter/k1/get").json()  # noqa: E731
    wait_until(lambda: count() == 42, timeout=15, what="state edited")
    restate("state", "clear", "Counter/k1", "--yes")
    wait_until(lambda: count() == 0, timeout=15, what="state cleared")
    assert "count" not in restate("kv", "get", "Counter", "k1", check=False).stdout

    one = restate("sql", "select 1")
    assert "INT64(1)" in one.stdout and "1 rows" in one.stderr, one
    rows = restate("sql", "SELECT name, ty FROM sys_service").stdout
    assert "Counter" in rows, rows


def test_invocations_list_shows_a_backing_off_invocation_with_its_error(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    restate: Run,
) -> None:
    deployment("control")
    inv = _send(http, server, "Booking/book", "cli")

    def listed() -> str | None:
        out = restate("invocations", "list").stdout
        return out if inv in out and "payment provider is down" in out else None

    out = wait_until(listed, timeout=30, what="the failing invocation listed with its error")
    assert "backing-off" in out.lower() or "retrying" in out.lower(), out
    described = restate("invocations", "describe", inv).stdout
    assert "payment provider is down" in described, described
