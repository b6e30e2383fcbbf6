"""Fixtures for the end-to-end tests: a real server process and real SDK deployments.

The server under test is pyrestate by default; set PYRESTATE_E2E_TARGET=official to run
the same tests against the official restate-server (the oracle that proves the tests
themselves right). See tests/e2e/harness.py for the process helpers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import (
    OFFICIAL_BIN_ENV,
    REPO_ROOT,
    Deployment,
    Server,
    official_binary,
    register,
    target,
    transport,
    wait_services_ready,
)

# Tests that host an example app in-process (the fake deployment) import `examples.*`.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Where fixtures leave callables that render log tails for a failing test's report.
_LOG_SOURCES = pytest.StashKey[list[Callable[[], str]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "calls: needs service-to-service calls (not yet promised by the server core)"
    )
    config.addinivalue_line(
        "markers",
        "own_process(why): needs the services in a process of their own (skipped when the "
        "server runs them in-process)",
    )
    config.addinivalue_line(
        "markers",
        "server_only: tests the server's own surface (settings, CLIs, psql, bad input from "
        "fake deployments); scripts/test.sh runs them in its first pass only",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if transport() != "inprocess":
        return
    for item in items:
        marker = item.get_closest_marker("own_process")
        if marker is not None:
            item.add_marker(pytest.mark.skip(reason=f"in-process services: {marker.args[0]}"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.failed and call.when in ("setup", "call"):
        for source in item.stash.get(_LOG_SOURCES, []):
            try:
                text = source()
            except Exception as exc:
                text = f"<could not read log: {exc!r}>"
            report.sections.append(("e2e logs", text))
    return report


def _add_log_source(request: pytest.FixtureRequest, source: Callable[[], str]) -> None:
    request.node.stash.setdefault(_LOG_SOURCES, []).append(source)


@pytest.fixture(scope="session")
def e2e_target() -> str:
    return target()


@pytest.fixture(scope="session")
def official_bin(e2e_target: str) -> str | None:
    if e2e_target != "official":
        return None
    binary = official_binary()
    if binary is None:
        pytest.fail(
            "official restate-server not found; install it with "
            "`npm install --prefix /tmp/oracle @restatedev/restate-server@1.7.12` "
            f"or point {OFFICIAL_BIN_ENV} at the binary"
        )
    return binary


@pytest.fixture
def server_options() -> dict[str, Any]:
    """Extra keyword arguments for `Server` (`extra_args`, `extra_env`).

    A test module that needs a specially configured server overrides this fixture.
    """
    return {}


@pytest.fixture
def server(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    e2e_target: str,
    official_bin: str | None,
    server_options: dict[str, Any],
) -> Iterator[Server]:
    """A fresh server on free ports and its own data dir; `kill()` + `start()` restart it."""
    srv = Server(e2e_target, tmp_path / "server", official_bin, **server_options)
    _add_log_source(request, srv.log_tail)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
    problems = srv.log_problems()
    if problems:
        pytest.fail(
            f"the server logged {len(problems)} error(s) or traceback(s):\n\n"
            + "\n\n".join(problems[:5]),
            pytrace=False,
        )


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(30.0)) as client:
        yield client


@pytest.fixture
def count_dir(tmp_path: Path) -> Path:
    """Directory where example services write their file-based execution counts."""
    path = tmp_path / "counts"
    path.mkdir()
    return path


DeploymentFactory = Callable[..., Deployment]


@pytest.fixture
def deployment(
    request: pytest.FixtureRequest,
    server: Server,
    http: httpx.Client,
    tmp_path: Path,
    count_dir: Path,
) -> Iterator[DeploymentFactory]:
    """Factory: `deployment("counter", http1=False)` serves `examples.counter:app` and
    registers it with the server. hypercorn gives HTTP/2 (bidi streaming); `http1=True`
    uses uvicorn, HTTP/1.1 only, registered with `use_http_11` (request/response mode).
    """
    started: list[Deployment] = []

    def make(app_module: str, http1: bool = False, *, do_register: bool = True) -> Deployment:
        dep = Deployment(f"examples.{app_module}:app", tmp_path, count_dir, http1=http1)
        started.append(dep)
        _add_log_source(request, dep.log_tail)
        dep.start()
        if do_register:
            resp = register(http, server.admin_url, dep.url, http1=http1)
            assert resp.status_code == 201, f"registration failed: {resp.status_code} {resp.text}"
            dep.registration = resp.json()
            wait_services_ready(http, server, [s["name"] for s in dep.registration["services"]])
        return dep

    try:
        yield make
    finally:
        for dep in started:
            dep.stop()
