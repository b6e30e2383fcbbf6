"""sys_journal as the official server 1.7.12 shows it, and what the official CLI makes of it.

The handlers of examples/journal.py write every kind of journal entry the Python SDK
knows. Their rows must be the official's: the same entry types and names, entry_json and
entry_lite_json of the same shapes (the official CLI deserializes entry_json into its
Rust types to show a call's target, a sleep's wake-up time...), an append time on each,
and NULL where the official leaves NULL. The expected rows are the official server's own
answer (tests/query/fixtures/official-journal-1.7.12.json); ids, times and the HTTP
client's headers are normalized before comparing. PYRESTATE_E2E_TARGET=official checks
the same against the official server.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from harness import REPO_ROOT, Deployment, Server, sql_rows, wait_until

GOLDEN = json.loads(
    (REPO_ROOT / "tests" / "query" / "fixtures" / "official-journal-1.7.12.json").read_text()
)["journals"]
_ARCH = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "x64")
CLI = REPO_ROOT / ".tools" / "node_modules" / "@restatedev" / f"restate-linux-{_ARCH}" / "bin"
# The official leaves these NULL in journals of service protocol 4 and later.
LEGACY = ("completed", "invoked_id", "invoked_target", "sleep_wakeup_at", "promise_name")
_ID = re.compile(r"(inv|sign|prom)_1[0-9A-Za-z_-]+")
_CLIENT_HEADERS = ("user-agent", "accept-encoding")  # whatever this httpx sends


def _normalize(value: Any, ids: dict[str, str], key: str | None = None) -> Any:
    """Ids numbered by first appearance; times and the client's headers blanked."""
    if isinstance(value, dict):
        if set(value) == {"name", "value"} and value["name"] in _CLIENT_HEADERS:
            return {"name": value["name"], "value": "*"}
        return {k: _normalize(v, ids, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v, ids, key) for v in value]
    if isinstance(value, str) and _ID.fullmatch(value):
        return ids.setdefault(value, f"{value[:4]}#{len(ids)}")
    if key in ("wake_up_time", "invoke_time") and value:
        return "<time>"
    return value


Row = tuple[str, str | None, str | None, str | None]  # entry_type, name, full, lite


def _shapes(rows: list[Row]) -> list[Any]:
    ids: dict[str, str] = {}
    out = []
    for ty, name, full, lite in rows:
        shape = [_normalize(json.loads(j) if j else None, ids) for j in (full, lite)]
        out.append((ty, name, *shape))
    return out


def _journal(http: httpx.Client, server: Server, inv: str, length: int) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM sys_journal WHERE id = '{inv}' ORDER BY index"
    return wait_until(
        lambda: (rows := sql_rows(http, server, sql)) and len(rows) == length and rows,
        timeout=30,
        what=f"the journal of {inv}",
    )


def _run_all(http: httpx.Client, server: Server) -> dict[str, str]:
    """Invokes each handler of examples/journal.py once; returns their invocation ids."""
    ids = {}
    for path in GOLDEN:
        resp = http.post(f"{server.ingress_url}/{path}", json=None)
        assert resp.status_code in (200, 422), (path, resp.text)  # `fails` fails on purpose
        ids[path] = resp.headers["x-restate-id"]
    return ids


def test_journal_rows_are_the_officials(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("journal")
    started = time.time() * 1000 - 1000
    ids = _run_all(http, server)
    for path, expected in GOLDEN.items():
        rows = _journal(http, server, ids[path], len(expected))
        got: list[Row] = [
            (r["entry_type"], r.get("name"), r.get("entry_json"), r.get("entry_lite_json"))
            for r in rows
        ]
        want: list[Row] = [(ty, name, full, lite) for ty, name, _raw, full, lite in expected]
        assert _shapes(got) == _shapes(want), path
        appended = [r["appended_at"] for r in rows]
        times = [_epoch_ms(a) for a in appended]
        assert times == sorted(times) and started <= times[0] <= time.time() * 1000, appended
        for r in rows:
            assert r["version"] == 2
            assert not [c for c in LEGACY if c in r], r


def _epoch_ms(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


def _describe(server: Server, tmp_path: Path, inv: str) -> str:
    env = {
        **os.environ,
        "RESTATE_ADMIN_URL": server.admin_url,
        "RESTATE_INGRESS_URL": server.ingress_url,
        "RESTATE_CLI_CONFIG_HOME": str(tmp_path / "cli-config"),
        "CI": "1",
        "NO_COLOR": "1",
        "COLUMNS": "250",
    }
    done = subprocess.run(
        [str(CLI / "restate"), "invocations", "describe", inv],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_official_cli_shows_each_entrys_details(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment], tmp_path: Path
) -> None:
    deployment("journal")
    ids = _run_all(http, server)
    steps = ids["JournalEntries/k/steps"]
    rows = _journal(http, server, steps, len(GOLDEN["JournalEntries/k/steps"]))
    callees = [
        json.loads(r["entry_json"])["Notification"]["Completion"]["CallInvocationId"]
        for r in rows
        if r["entry_type"] == "Notification: CallInvocationId"
    ]
    echo, nap, attached = (c["invocation_id"] for c in callees)
    shown = _describe(server, tmp_path, steps)
    stamp = r"#\d+ \[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d\d:\d\d\]"
    expected = [
        rf"{stamp} Command: Run \[first\] *$",
        rf"{stamp} Command: Sleep \[pause\] until \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{{3}}",
        rf"{stamp} Command: Call JournalCallee/echo {echo}$",
        rf"{stamp} Command: OneWayCall JournalCallee/nap {nap}$",
        rf"{stamp} Command: OneWayCall JournalCallee/echo {attached}$",
        rf"{stamp} Command: AttachInvocation {attached}$",
        rf"{stamp} Command: SendSignal signal Cancel to {nap}$",
    ]
    for pattern in expected:
        assert re.search(pattern, shown, re.MULTILINE), f"{pattern}\n{shown}"
    state = _describe(server, tmp_path, ids["JournalEntries/k/state"])
    assert re.search(rf"{stamp} Command: GetEagerState key a$", state, re.MULTILINE), state
    assert re.search(rf"{stamp} Command: ClearState key a$", state, re.MULTILINE), state
    flow = _describe(server, tmp_path, ids["JournalFlow/w1/run"])
    assert re.search(rf"{stamp} Command: PeekPromise key p$", flow, re.MULTILINE), flow
    signals = _describe(server, tmp_path, ids["JournalEntries/k/signals"])
    assert re.search(rf"{stamp} Command: CompleteAwakeable id sign_1\S+$", signals, re.MULTILINE)
    named = _describe(server, tmp_path, ids["JournalEntries/k/named"])
    me = ids["JournalEntries/k/named"]
    assert re.search(rf"Command: SendSignal signal go to {me}$", named, re.MULTILINE), named


_FAILURE_COLUMNS = (
    "last_failure_error_code, last_failure_related_command_index, "
    "last_failure_related_command_name, last_failure_related_command_type, "
    "last_failure_related_entry_index, last_failure_related_entry_name, "
    "last_failure_related_entry_type"
)


def _recorded_failure(http: httpx.Client, server: Server, path: str) -> dict[str, Any]:
    """The failure columns (NULLs left out) of an invocation sent to ``path``, once its
    first failed attempt is recorded."""
    resp = http.post(f"{server.ingress_url}/{path}/send", json="sql")
    assert resp.status_code == 202, resp.text
    sql = (
        f"SELECT {_FAILURE_COLUMNS} FROM sys_invocation WHERE id = '{resp.json()['invocationId']}'"
    )

    def failed() -> list[dict[str, Any]]:
        rows = sql_rows(http, server, sql)
        return rows if rows and "last_failure_error_code" in rows[0] else []

    (row,) = wait_until(failed, timeout=30, what=f"the failure of {path}")
    return row


def test_a_failing_attempt_shows_the_officials_error_code(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("control")
    # The handler's error (its `charge` step, the second command after the input); the
    # related *entry* columns are the official's for protocols <= 3 only.
    assert _recorded_failure(http, server, "Booking/book") == {
        "last_failure_error_code": "RT0007",
        "last_failure_related_command_index": 2,
        "last_failure_related_command_name": "charge",
        "last_failure_related_command_type": "Run",
    }


def test_an_error_raised_outside_any_step_is_the_handlers_too(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("lifecycle")
    # Backing off for 3 s after its first attempt raised, before naming any command.
    assert _recorded_failure(http, server, "Backoff/failOnce") == {
        "last_failure_error_code": "RT0007"
    }
