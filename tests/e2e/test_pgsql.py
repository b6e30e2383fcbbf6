"""`psql` against the server, as in the "Tour of Restate": the real client binary, a real
SDK deployment, the state it wrote.

The official server 1.7.12 no longer listens for PostgreSQL (older ones did, on the same
setting), so with PYRESTATE_E2E_TARGET=official only the admin API half runs: it proves
the query and the rows that psql must then show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

import httpx
import pytest
from harness import Deployment, Server, sql_rows

# The server's own surface: the same with any SDK version or transport (run once).
pytestmark = pytest.mark.server_only


def psql(server: Server, sql: str, *flags: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("psql")
    assert binary, "psql missing: scripts/setup.sh installs postgresql-client"
    # -X: no ~/.psqlrc, so the output is the same on every machine.
    argv = [binary, "-X", "-h", "127.0.0.1", "-p", str(server.pgsql_port), "-U", "restate"]
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10", "PGSSLMODE": "prefer"}
    return subprocess.run(
        [*argv, *flags, "-c", sql], capture_output=True, text=True, timeout=60, env=env
    )


STATE_SQL = "select service_name, service_key, key, value_utf8 from state"


def test_psql_shows_the_state_and_invocations(
    server: Server, deployment: Callable[..., Deployment], http: httpx.Client
) -> None:
    deployment("counter")
    resp = http.post(f"{server.ingress_url}/Counter/k1/add", json=5)
    assert resp.status_code == 200, resp.text
    rows = sql_rows(http, server, STATE_SQL)
    assert rows == [
        {"service_name": "Counter", "service_key": "k1", "key": "count", "value_utf8": "5"}
    ]
    if server.kind == "official":
        pytest.skip("the official server 1.7.12 has no PostgreSQL endpoint")

    shown = psql(server, STATE_SQL)
    assert shown.returncode == 0, shown.stderr
    lines = [line.split("|") for line in shown.stdout.splitlines()]
    assert [c.strip() for c in lines[0]] == ["service_name", "service_key", "key", "value_utf8"]
    assert [[c.strip() for c in line] for line in lines[2:3]] == [["Counter", "k1", "count", "5"]]
    assert "(1 row)" in shown.stdout

    invocations = psql(server, "select * from sys_invocation limit 5", "-A", "-F", "\t")
    assert invocations.returncode == 0, invocations.stderr
    header = invocations.stdout.splitlines()[0].split("\t")
    assert {"id", "target", "status"} <= set(header)
    assert "Counter/k1/add" in invocations.stdout

    bad = psql(server, "select * from no_such_table")
    assert bad.returncode != 0
    assert "ERROR:" in bad.stderr and "no_such_table" in bad.stderr
    broken = psql(server, "selec 1")
    assert broken.returncode != 0 and "ERROR:" in broken.stderr

    again = psql(server, "select count(*) as n from state", "-A", "-t")
    assert again.returncode == 0 and again.stdout.strip() == "1", again


def test_psycopg_reads_the_state(
    server: Server, deployment: Callable[..., Deployment], http: httpx.Client
) -> None:
    psycopg = pytest.importorskip("psycopg")
    if server.kind == "official":
        pytest.skip("the official server 1.7.12 has no PostgreSQL endpoint")
    deployment("counter")
    assert http.post(f"{server.ingress_url}/Counter/k2/add", json=3).status_code == 200
    dsn = f"host=127.0.0.1 port={server.pgsql_port} user=restate dbname=restate"
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            "select value_utf8 from state where service_name = %s and service_key = %s",
            ("Counter", "k2"),
        )
        assert cur.fetchall() == [("3",)]
