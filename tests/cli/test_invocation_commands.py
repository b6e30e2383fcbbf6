"""`pyrestate invocations ... | kv get | sql` against a real server and SDK services.

Listing, describing, `kv` and `sql` go through the admin API's SQL endpoint (POST /query);
the control commands through PATCH /invocations/{id}/{action}.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
from clirun import run, run_json
from harness import Deployment, Server, wait_until

DeploymentFactory = Callable[..., Deployment]


def _send(http: httpx.Client, server: Server, path: str, body: object) -> str:
    resp = http.post(f"{server.ingress_url}/{path}/send", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()["invocationId"]


def _outcome(http: httpx.Client, server: Server, inv: str) -> tuple[int, object]:
    resp = http.get(f"{server.ingress_url}/restate/invocation/{inv}/attach", timeout=60)
    return resp.status_code, resp.json().get("message") if resp.status_code >= 400 else resp.json()


def test_cancel_kill_pause_resume_and_purge(
    server: Server, http: httpx.Client, deployment: DeploymentFactory, count_dir: Path
) -> None:
    deployment("control")
    # Cancel a handler in a 2-minute durable sleep: it ends cancelled at once.
    napping = _send(http, server, "Child/nap", "c1")
    wait_until(lambda: (count_dir / "child-c1.log").exists(), timeout=30, what="nap started")
    assert run(server, "invocations", "cancel", napping).stdout.startswith(f"Cancelled {napping}")
    assert _outcome(http, server, napping) == (409, "cancelled")
    again = run(server, "invocations", "cancel", napping, code=1)
    assert f"failed with 409 Conflict: The invocation '{napping}' was already completed." in (
        again.stderr
    )

    # Pause and resume one that fails until an operator steps in, then kill it.
    stuck = _send(http, server, "Locker/k1/hold", True)
    wait_until(
        lambda: run_json(server, "invocations", "pause", stuck)["status"] in (200, 202),
        timeout=30,
        what="the failing invocation paused",
    )
    assert run(server, "invocations", "resume", stuck).stdout.startswith(f"Resumed {stuck}")
    assert run(server, "invocations", "kill", stuck).stdout.startswith(f"Killed {stuck}")
    assert _outcome(http, server, stuck) == (409, "killed")

    # Purge forgets a completed invocation; a second purge finds nothing.
    done = _send(http, server, "Locker/k2/hold", False)
    assert _outcome(http, server, done) == (200, "held")
    assert run_json(server, "invocations", "purge", done) == {
        "id": done,
        "action": "purge",
        "status": 200,
    }
    assert http.get(f"{server.ingress_url}/restate/invocation/{done}/output").status_code == 404
    gone = run(server, "invocations", "purge", done, code=1)
    assert f"404 Not Found: The requested invocation '{done}' does not exist" in gone.stderr


def test_list_describe_kv_and_sql(
    server: Server, http: httpx.Client, deployment: DeploymentFactory, count_dir: Path
) -> None:
    deployment("counter")
    deployment("control")
    added = _send(http, server, "Counter/k/add", 5)
    assert _outcome(http, server, added) == (200, 5)
    napping = _send(http, server, "Child/nap", "n1")
    wait_until(lambda: (count_dir / "child-n1.log").exists(), timeout=30, what="nap started")

    # kv get: the count the call left behind.
    kv = run(server, "kv", "get", "Counter", "k").stdout
    assert "count" in kv and " 5 " in kv
    assert run_json(server, "kv", "get", "Counter", "k") == {"count": "5"}
    assert "No state for Counter/nobody" in run(server, "kv", "get", "Counter", "nobody").stdout

    # list: the finished call and the sleeping one; filters narrow it down.
    table = run(server, "invocations", "list").stdout
    assert added in table and "Counter/k/add" in table and "completed" in table
    assert napping in table and "Child/nap" in table
    completed = run_json(server, "invocations", "list", "--status", "completed")
    assert [(r["id"], r["target"]) for r in completed] == [(added, "Counter/k/add")]
    (child,) = run_json(server, "invocations", "list", "--service", "Child")
    assert child["id"] == napping and child["status"] != "completed"
    assert len(run_json(server, "invocations", "list", "--limit", "1")) == 1

    # describe: the invocation and its journal (input, state, output entries).
    shown = run(server, "invocations", "describe", added).stdout
    assert added in shown and "Counter/k/add" in shown and "completed" in shown
    assert "Command: Input" in shown and "Command: SetState" in shown and "key: count" in shown
    described = run_json(server, "invocations", "describe", napping)
    assert described["invocation"]["target"] == "Child/nap"
    assert [e["index"] for e in described["journal"]][:1] == [0]
    assert any("Sleep" in e["entry_type"] for e in described["journal"]), described["journal"]
    missing = run(
        server, "invocations", "describe", "inv_1bQTZHA7mHJc66L9jDOj6lHmM5Wqruk1uK", code=1
    )
    assert "no invocation inv_1bQTZHA7mHJc66L9jDOj6lHmM5Wqruk1uK" in missing.stderr

    # sql: any query, rows as a table or JSON.
    query = "SELECT service_key, key, value_utf8 FROM state WHERE service_name = 'Counter'"
    rows = run(server, "sql", query).stdout
    assert "SERVICE_KEY" in rows and "VALUE_UTF8" in rows and "1 row(s)" in rows
    assert run_json(server, "sql", query) == [
        {"service_key": "k", "key": "count", "value_utf8": "5"}
    ]
    broken = run(server, "sql", "SELECT nope FROM nowhere", code=1)
    # The server's own words (the official answers 500 with DataFusion's message).
    assert broken.stderr.startswith("error: POST /query failed with ")
    assert "nowhere" in broken.stderr
