"""SQL introspection at scale: fill a partition with N invocations, time queries on it.

    .venv/bin/python bench/sql.py [--invocations 1000000] [--data /tmp/pyrestate-sql-bench]
                                  [--repeat 5] [--output bench/results/sql.md]

Rows are written straight through the storage codec (no server, no SDK), mostly completed
invocations of three services plus a few thousand running, suspended, inboxed, scheduled
and backing-off ones, with a journal and state for some. Each query then runs through the
same engine the admin API uses (in this process, so the times are the engine's, without
HTTP or the worker hop); the median of ``--repeat`` runs is reported, with rows read from
storage and the answer's size.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from pyrestate.core.ids import new_invocation_id  # noqa: E402
from pyrestate.core.model import (  # noqa: E402
    Failure,
    HandlerType,
    InvocationStatus,
    Output,
    ServiceType,
    Status,
    Target,
)
from pyrestate.query.engine import QueryEngine  # noqa: E402
from pyrestate.query.tables import PartitionSource, RegistrySnapshot  # noqa: E402
from pyrestate.storage.sqlite import _UPSERT, SqlitePartitionStore, _status_row  # noqa: E402

DAY_MS = 86_400_000
_JOURNAL_ROW = "INSERT INTO journal (id, idx, type, body, appended_at) VALUES (?, ?, ?, ?, ?)"
_ACTIVE = [Status.INVOKED, Status.SUSPENDED, Status.INBOXED, Status.SCHEDULED, Status.BACKING_OFF]


def fill(path: Path, n: int) -> tuple[str, str]:
    """Write ``n`` invocations; returns one completed id and one running id to query."""
    store = SqlitePartitionStore(path, "OFF")
    db = store._writer
    rng = random.Random(7)
    now = 1_795_000_000_000
    services = [
        ("Greeter", "greet", None, ServiceType.SERVICE, None),
        ("Counter", "add", "k", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE),
        ("Checkout", "pay", None, ServiceType.SERVICE, None),
    ]
    ids: dict[str, str] = {}
    batch: list[tuple[object, ...]] = []
    journal: list[tuple[bytes, int, int, bytes, int]] = []
    db.execute("BEGIN")
    for i in range(n):
        svc, handler, key, ty, hty = services[i % 3]
        obj_key = f"{key}{i % 10_000}" if key else None
        inv = new_invocation_id(
            rng.randbytes(24), service=svc, handler=handler, key=obj_key, idempotency_key=None
        )
        active = i % 200 == 0  # 0.5% not completed
        status = _ACTIVE[(i // 200) % len(_ACTIVE)] if active else Status.COMPLETED
        created = now - (n - i) * 10
        failed = i % 50 == 1
        st = InvocationStatus(
            id=inv,
            target=Target(svc, handler, obj_key, ty, hty),
            status=status,
            created_at=created,
            modified_at=created + 5,
            running_at=created + 1,
            completed_at=created + 5 if status is Status.COMPLETED else None,
            deployment_id="dp_1bench00000000000000000",
            journal_length=2,
            command_count=2,
            retry_count=3 if status is Status.BACKING_OFF else 0,
            next_retry_at=created + 1000 if status is Status.BACKING_OFF else None,
            last_failure=Failure(500, "boom") if status is Status.BACKING_OFF else None,
            output=(Output(failure=Failure(409, "nope")) if failed else Output(value=b'"hello"'))
            if status is Status.COMPLETED
            else None,
            headers=(("content-type", "application/json"),),
            completion_retention=DAY_MS,
            journal_retention=DAY_MS,
        )
        batch.append(_status_row(st))
        if i % 100 == 0:
            journal.append((inv.to_bytes(), 0, 0x0400, b"\x72\x05\x0a\x03\x22x\x22", created))
        if i == n // 2:
            ids["completed"] = str(inv)
        if active and status is Status.INVOKED:
            ids["running"] = str(inv)
        if len(batch) >= 50_000:
            db.executemany(_UPSERT, batch)
            db.executemany(_JOURNAL_ROW, journal)
            batch.clear()
            journal.clear()
    db.executemany(_UPSERT, batch)
    db.executemany(_JOURNAL_ROW, journal)
    db.executemany(
        "INSERT OR REPLACE INTO state VALUES (?, ?, ?, ?)",
        [("Counter", f"k{k}", b"count", str(k).encode()) for k in range(10_000)],
    )
    db.execute("COMMIT")
    store.close()
    return ids["completed"], ids["running"]


def queries(completed: str, running: str) -> list[tuple[str, str]]:
    cli_big = (
        "SELECT inv.id, inv.target, inv.target_service_ty, inv.idempotency_key, inv.status, "
        "inv.created_at, inv.modified_at as state_modified_at, inv.pinned_deployment_id, "
        "inv.retry_count as num_retries, inv.last_failure as last_failure_message, "
        "inv.next_retry_at, inv.last_start_at, inv.invoked_by_id, inv.invoked_by_target, "
        "inv.completion_result, inv.completion_failure, dp.id IS NOT NULL as "
        "pinned_deployment_exists FROM sys_invocation inv LEFT JOIN sys_deployment dp ON "
        f"dp.id = inv.pinned_deployment_id WHERE inv.id = '{completed}' AND inv.id in "
        f"('{completed}') ORDER BY inv.created_at DESC, inv.id"
    )
    return [
        ("by id", f"SELECT * FROM sys_invocation WHERE id = '{completed}'"),
        ("by id (running)", f"SELECT * FROM sys_invocation WHERE id = '{running}'"),
        ("CLI describe (join)", cli_big),
        (
            "journal by id",
            f"SELECT * FROM sys_journal WHERE id = '{completed}' ORDER BY index DESC LIMIT 100",
        ),
        ("by status = running", "SELECT id, target FROM sys_invocation WHERE status = 'running'"),
        (
            "CLI list: status != completed",
            "SELECT id FROM sys_invocation inv WHERE status != 'completed' "
            "ORDER BY inv.created_at DESC, inv.id LIMIT 100",
        ),
        (
            "CLI list: count not completed",
            "SELECT COUNT(1) FROM (SELECT * FROM sys_invocation inv LIMIT 50000) "
            "WHERE status != 'completed'",
        ),
        (
            "by service, LIMIT 5",
            "SELECT id, status FROM sys_invocation WHERE target_service_name = 'Checkout' LIMIT 5",
        ),
        (
            "by service, not completed",
            "SELECT id, status FROM sys_invocation "
            "WHERE target_service_name = 'Checkout' AND status != 'completed'",
        ),
        (
            "CLI services status (inboxed)",
            "SELECT target_service_name, target_handler_name, 'pending' as status, COUNT(1) as "
            "num_invocations, MIN(created_at) as oldest_at, FIRST_VALUE(id ORDER BY created_at "
            "ASC) as oldest_invocation FROM sys_invocation_status WHERE status == 'inboxed' AND "
            "target_service_name IN ('Greeter') GROUP BY target_service_name, target_handler_name",
        ),
        (
            "CLI services status (per status)",
            "SELECT target_service_name, target_handler_name, status, COUNT(1) as "
            "num_invocations, MIN(created_at) as oldest_at FROM sys_invocation WHERE "
            "target_service_name IN ('Greeter') GROUP BY target_service_name, "
            "target_handler_name, status ORDER BY target_handler_name",
        ),
        (
            "state of one key",
            "SELECT * FROM state WHERE service_name = 'Counter' AND service_key = 'k42'",
        ),
        ("count(*)", "SELECT count(*) FROM sys_invocation"),
        (
            "count by status",
            "SELECT status, count(*) FROM sys_invocation GROUP BY status ORDER BY status",
        ),
        (
            "count by service (full scan)",
            "SELECT target_service_name, count(*) FROM sys_invocation GROUP BY target_service_name",
        ),
        ("SELECT * LIMIT 5", "SELECT * FROM sys_invocation LIMIT 5"),
        (
            "newest 50 (a list's first page)",
            "SELECT id, target, status, created_at FROM sys_invocation "
            "ORDER BY created_at DESC LIMIT 50",
        ),
        (
            "newest 50 of one service",
            "SELECT id, status, created_at FROM sys_invocation "
            "WHERE target_service_name = 'Greeter' ORDER BY created_at DESC LIMIT 50",
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--invocations", type=int, default=1_000_000)
    ap.add_argument("--data", type=Path, default=Path("/tmp/pyrestate-sql-bench"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--output", type=Path, default=ROOT / "bench/results/sql.md")
    args = ap.parse_args()
    path = args.data / "partition-0.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    t0 = time.monotonic()
    completed, running = fill(path, args.invocations)
    fill_s = time.monotonic() - t0
    engine = QueryEngine([PartitionSource(path)], "1.7.12")
    registry = RegistrySnapshot()
    lines = [
        "| query | median ms | min ms | max ms | rows read from storage | answer bytes |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, sql in queries(completed, running):
        times = []
        answer = None
        for _ in range(args.repeat):
            t = time.perf_counter()
            answer = engine.run(sql, registry, True)
            times.append((time.perf_counter() - t) * 1000)
            assert answer.status == 200, (name, answer.body[:300])
        assert answer is not None
        line = (
            f"| {name} | {statistics.median(times):.1f} | {min(times):.1f} | {max(times):.1f} "
            f"| {answer.rows_read} | {len(answer.body)} |"
        )
        print(line, flush=True)
        lines.append(line)
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "src/pyrestate/query"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    header = [
        "# SQL introspection at scale",
        "",
        f"Commit {commit}{' + uncommitted src/pyrestate/query' if dirty else ''}, "
        f"{os.cpu_count()} cores. Command: `.venv/bin/python bench/sql.py "
        f"--invocations {args.invocations} --repeat {args.repeat}`.",
        "",
        f"{args.invocations:,} invocations in one partition ({path.stat().st_size // 2**20} MiB, "
        f"filled in {fill_s:.0f} s), 0.5% not completed; queries through the engine in-process "
        f"(no HTTP, no worker hop), median of {args.repeat} runs, JSON answers.",
        "",
    ]
    args.output.write_text("\n".join(header + lines) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
