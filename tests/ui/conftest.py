"""Fixtures of the web UI tests: one live pyrestate server with real SDK deployments.

The server and the example deployments are those of the end-to-end suite (its harness is
reused; its failure-log hook too, loaded under its own module name as tests/cli does),
started once for all UI tests: every test uses keys and tags of its own, so they can
share it, and the suite stays quick. A test fails if the server logged an error or a
traceback while it ran (a page that failed inside would have).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

E2E_DIR = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from harness import (  # noqa: E402
    Deployment,
    Server,
    load_e2e_conftest,
    register,
    wait_services_ready,
)
from live_server import Live  # noqa: E402

_e2e = load_e2e_conftest()
pytest_runtest_makereport = _e2e.pytest_runtest_makereport

# Registered when the server starts; the others are served for tests to register.
REGISTERED = ("counter", "control", "signup")
UNREGISTERED = ("demo", "tour")


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    workdir = tmp_path_factory.mktemp("ui")
    count_dir = workdir / "counts"
    count_dir.mkdir()
    server = Server("pyrestate", workdir / "server")
    deployments = {
        name: Deployment(f"examples.{name}:app", workdir, count_dir)
        for name in (*REGISTERED, *UNREGISTERED)
    }
    try:
        server.start()
        for dep in deployments.values():
            dep.start()
        with httpx.Client(timeout=30) as http:
            names = []
            for name in REGISTERED:
                resp = register(http, server.admin_url, deployments[name].url)
                assert resp.status_code == 201, resp.text
                names += [s["name"] for s in resp.json()["services"]]
            wait_services_ready(http, server, names)
        yield Live(server, deployments, count_dir)
    finally:
        for dep in deployments.values():
            dep.stop()
        server.stop()


@pytest.fixture
def server_log_checked(request: pytest.FixtureRequest, live: Live) -> Iterator[None]:
    """Attach the server log to a failure; fail a test during which it logged errors."""
    _e2e._add_log_source(request, live.server.log_tail)
    before = len(live.server.log_problems())
    yield
    problems = live.server.log_problems()[before:]
    if problems:
        pytest.fail(
            "the server logged error(s) or traceback(s):\n\n" + "\n\n".join(problems[:5]),
            pytrace=False,
        )


@pytest.fixture
def http(server_log_checked: None) -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        yield client
