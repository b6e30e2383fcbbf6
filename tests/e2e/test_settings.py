"""Settings that reach the server process: a config file, `--base-dir`, official env names.

Each case starts `pyrestate server` without its address and data dir flags, so the only
way for the server to listen where the test looks, and to keep its data where the test
looks, is the setting under test. Data written before a SIGKILL is read back after it, from
the same place. `[sqlite] synchronous` is checked through what SQLite reports back once
the server has applied it (the startup log line), not through the value that was asked for.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from harness import Deployment, Server, register, target, wait_services_ready

# The server's own surface: the same with any SDK version or transport (run once).
pytestmark = [
    pytest.mark.skipif(target() == "official", reason="pyrestate's own settings"),
    pytest.mark.server_only,
]

Launch = Callable[..., Server]


@pytest.fixture
def launch(tmp_path: Path, count_dir: Path, http: httpx.Client) -> Iterator[Launch]:
    """Starts a server configured by `configure(server) -> (args, env)`, and a counter on it."""
    started: list[Server | Deployment] = []

    def make(configure: Callable[[Server], tuple[list[str], dict[str, str]]]) -> Server:
        # The ports and data dir are picked first; `configure` then hands them over.
        srv = Server("pyrestate", tmp_path / "server", bind_flags=False)
        args, env = configure(srv)
        srv.process.argv += args
        srv.process.env = {**(srv.process.env or os.environ), **env}
        started.append(srv)
        srv.start()
        dep = Deployment("examples.counter:app", tmp_path, count_dir)
        started.append(dep)
        dep.start()
        resp = register(http, srv.admin_url, dep.url)
        assert resp.status_code == 201, resp.text
        wait_services_ready(http, srv, ["Counter"])
        return srv

    try:
        yield make
    finally:
        for proc in reversed(started):
            proc.stop()
    for proc in started:
        if isinstance(proc, Server):
            assert not proc.log_problems(), proc.log_problems()


def _startup(server: Server) -> tuple[Path, str]:
    """The data dir and SQLite's synchronous level, as the server logged them at startup."""
    found = re.findall(r"data in (\S+) \(sqlite synchronous=(\w+)\)", server.log_path.read_text())
    assert found, server.log_tail()
    data, level = found[-1]
    return Path(data), level


def _survives_a_crash(server: Server, http: httpx.Client) -> None:
    """A state write lands in the data dir the server was given, and is there after SIGKILL."""
    added = http.post(f"{server.ingress_url}/Counter/k/add", json=5)
    assert added.status_code == 200, added.text
    assert (server.data_dir / "partition-0.db").exists()
    server.restart()
    got = http.post(f"{server.ingress_url}/Counter/k/get", json=None)
    assert (got.status_code, got.json()) == (200, 5), got.text


def test_config_file_sets_addresses_data_dir_and_sqlite_sync(
    launch: Launch, http: httpx.Client, tmp_path: Path
) -> None:
    config = tmp_path / "restate.toml"

    def configure(srv: Server) -> tuple[list[str], dict[str, str]]:
        config.write_text(
            f'base-dir = "{srv.data_dir}"\n'
            f'[ingress]\nbind-address = "127.0.0.1:{srv.ingress_port}"\n'
            f'[admin]\nbind-address = "127.0.0.1:{srv.admin_port}"\n'
            '[sqlite]\nsynchronous = "NORMAL"\n'
        )
        return ["--config-file", str(config)], {}

    server = launch(configure)
    assert _startup(server) == (server.data_dir, "NORMAL")
    _survives_a_crash(server, http)


def test_base_dir_flag_and_official_env_names(launch: Launch, http: httpx.Client) -> None:
    def configure(srv: Server) -> tuple[list[str], dict[str, str]]:
        env = {
            "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{srv.ingress_port}",
            "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{srv.admin_port}",
            "PYRESTATE_SQLITE_SYNCHRONOUS": "EXTRA",
        }
        return ["--base-dir", str(srv.data_dir)], env

    server = launch(configure)
    # Without the setting the server would use FULL and ./pyrestate-data.
    assert _startup(server) == (server.data_dir, "EXTRA")
    _survives_a_crash(server, http)
