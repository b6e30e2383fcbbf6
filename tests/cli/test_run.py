"""`pyrestate run module:app`: the server with its services inside, as users start it."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
from harness import REPO_ROOT, ManagedProcess, free_ports, wait_until


def _run(tmp_path: Path) -> tuple[ManagedProcess, str, str]:
    ingress, admin, pgsql = free_ports(3)
    argv = [
        sys.executable,
        "-m",
        "pyrestate",
        "run",
        "examples.demo:app",
        "--ingress-bind",
        f"127.0.0.1:{ingress}",
        "--admin-bind",
        f"127.0.0.1:{admin}",
        "--pgsql-bind",
        f"127.0.0.1:{pgsql}",
        "--data-dir",
        str(tmp_path / "data"),
    ]
    proc = ManagedProcess("pyrestate run", argv, tmp_path / "run.log", None, REPO_ROOT)
    return proc, f"http://127.0.0.1:{ingress}", f"http://127.0.0.1:{admin}"


def _visit(ingress: str) -> str:
    resp = httpx.post(f"{ingress}/Visits/Ada/visit", timeout=30)
    assert resp.status_code == 200, resp.text
    return str(resp.json())


def test_run_serves_the_app_and_survives_a_kill(tmp_path: Path) -> None:
    proc, ingress, admin = _run(tmp_path)
    proc.start()
    try:
        wait_until(
            lambda: httpx.get(f"{admin}/health", timeout=2).status_code == 200,
            timeout=60,
            what="pyrestate run up",
        )
        (dep,) = httpx.get(f"{admin}/deployments").json()["deployments"]
        assert dep["uri"] == "asgi://examples.demo/app"
        greet = httpx.post(f"{ingress}/Greeter/greet", json="Ada", timeout=30)
        assert greet.json() == "Hello, Ada!"
        assert _visit(ingress).endswith("visit number 1.")
        proc.kill()  # SIGKILL: the state committed before the answer survives
        proc.start()
        wait_until(
            lambda: httpx.get(f"{admin}/health", timeout=2).status_code == 200,
            timeout=60,
            what="pyrestate run up again",
        )
        assert _visit(ingress).endswith("visit number 2.")
        # Registered again at start: still the one deployment, same id.
        assert [d["id"] for d in httpx.get(f"{admin}/deployments").json()["deployments"]] == [
            dep["id"]
        ]
        # SIGTERM stops it, although the SDK's app asks for SIGTERM on its first request.
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=15) == 0
    finally:
        proc.stop()


def test_run_refuses_what_it_cannot_load(tmp_path: Path) -> None:
    proc, _, _ = _run(tmp_path)
    proc.argv[4] = "examples.nowhere:app"
    proc.start()
    assert proc.proc is not None and proc.proc.wait(timeout=60) == 2
    assert "cannot load examples.nowhere:app" in (tmp_path / "run.log").read_text()
