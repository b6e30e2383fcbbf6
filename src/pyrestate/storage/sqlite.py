"""SQLite persistence of one partition: the embedded default.

No semantics here: records in, records out. Writes arrive as one ``Changes`` batch per
transaction (group commit); reads use a second connection, which in WAL mode sees the
last committed state and never blocks the writer.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Set
from pathlib import Path

from pyrestate.core.changes import Changes
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import (
    CallerRef,
    Failure,
    HandlerType,
    InvocationStatus,
    JournalEntry,
    Output,
    ServiceType,
    Status,
    Target,
    TimerKey,
    TimerKind,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS invocation (
    id BLOB PRIMARY KEY,
    status TEXT NOT NULL,
    service TEXT NOT NULL,
    handler TEXT NOT NULL,
    key TEXT,
    service_type TEXT NOT NULL,
    handler_type TEXT,
    created_at INTEGER NOT NULL,
    modified_at INTEGER NOT NULL,
    headers TEXT NOT NULL,
    idempotency_key TEXT,
    callers TEXT NOT NULL,
    execution_time INTEGER,
    inbox_seq INTEGER,
    running_at INTEGER,
    completed_at INTEGER,
    deployment_id TEXT,
    journal_length INTEGER NOT NULL,
    command_count INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    retry_count INTEGER NOT NULL,
    next_retry_at INTEGER,
    last_failure_code INTEGER,
    last_failure_message TEXT,
    last_failure_related TEXT,
    waiting TEXT NOT NULL,
    seen TEXT NOT NULL,
    output_value BLOB,
    output_failure_code INTEGER,
    output_failure_message TEXT,
    completion_retention INTEGER NOT NULL,
    journal_retention INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS invocation_active ON invocation(status) WHERE status != 'completed';
CREATE TABLE IF NOT EXISTS journal (
    id BLOB NOT NULL,
    idx INTEGER NOT NULL,
    type INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    name BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (service, key, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timer (
    wake_at INTEGER NOT NULL,
    id BLOB NOT NULL,
    kind TEXT NOT NULL,
    completion_id INTEGER NOT NULL,
    PRIMARY KEY (wake_at, id, kind, completion_id)
) WITHOUT ROWID;
"""

_COLUMNS = (
    "id, status, service, handler, key, service_type, handler_type, created_at, modified_at, "
    "headers, idempotency_key, callers, execution_time, inbox_seq, running_at, completed_at, "
    "deployment_id, journal_length, command_count, attempt, retry_count, next_retry_at, "
    "last_failure_code, last_failure_message, last_failure_related, waiting, seen, "
    "output_value, output_failure_code, output_failure_message, completion_retention, "
    "journal_retention"
)
_UPSERT = (
    f"INSERT OR REPLACE INTO invocation ({_COLUMNS}) VALUES ("
    + ", ".join("?" * len(_COLUMNS.split(",")))
    + ")"
)
_SELECT = f"SELECT {_COLUMNS} FROM invocation"


def _status_row(st: InvocationStatus) -> tuple[object, ...]:
    t = st.target
    out = st.output
    failure = st.last_failure
    return (
        st.id.to_bytes(),
        st.status.value,
        t.service,
        t.handler,
        t.key,
        t.service_type.value,
        t.handler_type.value if t.handler_type else None,
        st.created_at,
        st.modified_at,
        json.dumps(st.headers) if st.headers else "[]",
        st.idempotency_key,
        json.dumps([[str(c.invocation_id), c.completion_id] for c in st.callers])
        if st.callers
        else "[]",
        st.execution_time,
        st.inbox_seq,
        st.running_at,
        st.completed_at,
        st.deployment_id,
        st.journal_length,
        st.command_count,
        st.attempt,
        st.retry_count,
        st.next_retry_at,
        failure.code if failure else None,
        failure.message if failure else None,
        st.last_failure_related,
        _pair(st.waiting_completions, st.waiting_signals),
        _pair(st.completions_seen, st.signals_seen),
        out.value if out is not None and out.failure is None else None,
        out.failure.code if out is not None and out.failure else None,
        out.failure.message if out is not None and out.failure else None,
        st.completion_retention,
        st.journal_retention,
    )


def _pair(completions: Set[int], signals: Set[int | str]) -> str:
    """Completion and signal ids as one JSON text; most invocations have none."""
    if not completions and not signals:
        return "[[], []]"
    ordered = sorted(signals, key=lambda s: (isinstance(s, str), s))
    return json.dumps([sorted(completions), ordered])


def _status_from_row(r: tuple) -> InvocationStatus:  # type: ignore[type-arg]
    waiting = json.loads(r[25])
    seen = json.loads(r[26])
    output = None
    if r[28] is not None:
        output = Output(failure=Failure(r[28], r[29]))
    elif r[1] == Status.COMPLETED.value:
        output = Output(value=r[27] or b"")
    return InvocationStatus(
        id=InvocationId.from_bytes(r[0]),
        status=Status(r[1]),
        target=Target(r[2], r[3], r[4], ServiceType(r[5]), HandlerType(r[6]) if r[6] else None),
        created_at=r[7],
        modified_at=r[8],
        headers=tuple(tuple(h) for h in json.loads(r[9])),  # type: ignore[misc]
        idempotency_key=r[10],
        callers=tuple(CallerRef(InvocationId.parse(i), c) for i, c in json.loads(r[11])),
        execution_time=r[12],
        inbox_seq=r[13],
        running_at=r[14],
        completed_at=r[15],
        deployment_id=r[16],
        journal_length=r[17],
        command_count=r[18],
        attempt=r[19],
        retry_count=r[20],
        next_retry_at=r[21],
        last_failure=Failure(r[22], r[23]) if r[22] is not None else None,
        last_failure_related=r[24],
        waiting_completions=frozenset(waiting[0]),
        waiting_signals=frozenset(waiting[1]),
        completions_seen=set(seen[0]),
        signals_seen=set(seen[1]),
        output=output,
        completion_retention=r[30],
        journal_retention=r[31],
    )


class SqlitePartitionStore:
    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute(f"PRAGMA synchronous={synchronous}")
        self._writer.executescript(_SCHEMA)
        self._reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._reader.execute("PRAGMA query_only=1")
        self._write_lock = threading.Lock()

    def close(self) -> None:
        self._reader.close()
        self._writer.close()

    # --- Writes

    def commit(self, changes: Changes) -> None:
        """Apply one batch atomically and durably (called from a worker thread)."""
        with self._write_lock:
            db = self._writer
            db.execute("BEGIN")
            try:
                self._apply(db, changes)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _apply(db: sqlite3.Connection, c: Changes) -> None:
        if c.purged:
            ids = [(i.to_bytes(),) for i in c.purged]
            db.executemany("DELETE FROM invocation WHERE id = ?", ids)
            db.executemany("DELETE FROM journal WHERE id = ?", ids)
        if c.statuses:
            db.executemany(_UPSERT, [_status_row(st) for st in c.statuses.values()])
        if c.journal:
            db.executemany(
                "INSERT OR REPLACE INTO journal (id, idx, type, body) VALUES (?, ?, ?, ?)",
                [(i.to_bytes(), idx, e.type, e.body) for i, idx, e in c.journal],
            )
        for op in c.state:
            if op.name is None:
                db.execute("DELETE FROM state WHERE service = ? AND key = ?", (op.service, op.key))
            elif op.value is None:
                db.execute(
                    "DELETE FROM state WHERE service = ? AND key = ? AND name = ?",
                    (op.service, op.key, op.name),
                )
            else:
                db.execute(
                    "INSERT OR REPLACE INTO state (service, key, name, value) VALUES (?, ?, ?, ?)",
                    (op.service, op.key, op.name, op.value),
                )
        if c.timers_added:
            db.executemany(
                "INSERT OR REPLACE INTO timer (wake_at, id, kind, completion_id) VALUES (?,?,?,?)",
                [
                    (t.wake_at, t.invocation_id, t.kind.value, t.completion_id)
                    for t in c.timers_added
                ],
            )
        if c.timers_removed:
            db.executemany(
                "DELETE FROM timer WHERE wake_at = ? AND id = ? AND kind = ? AND completion_id = ?",
                [
                    (t.wake_at, t.invocation_id, t.kind.value, t.completion_id)
                    for t in c.timers_removed
                ],
            )

    # --- Reads (the machine's Loader, the invoker, recovery)

    def invocation(self, invocation_id: InvocationId) -> InvocationStatus | None:
        row = self._reader.execute(
            _SELECT + " WHERE id = ?", (invocation_id.to_bytes(),)
        ).fetchone()
        return _status_from_row(row) if row else None

    def state(self, service: str, key: str) -> dict[bytes, bytes]:
        rows = self._reader.execute(
            "SELECT name, value FROM state WHERE service = ? AND key = ?", (service, key)
        )
        return {bytes(n): bytes(v) for n, v in rows}

    def journal(self, invocation_id: InvocationId, length: int) -> list[JournalEntry]:
        rows = self._reader.execute(
            "SELECT type, body FROM journal WHERE id = ? AND idx < ? ORDER BY idx",
            (invocation_id.to_bytes(), length),
        )
        return [JournalEntry(t, bytes(b)) for t, b in rows]

    def active_invocations(self) -> list[InvocationStatus]:
        rows = self._reader.execute(_SELECT + " WHERE status != 'completed'")
        return [_status_from_row(r) for r in rows]

    def timers(self) -> list[TimerKey]:
        rows = self._reader.execute("SELECT wake_at, id, kind, completion_id FROM timer")
        return [TimerKey(w, bytes(i), TimerKind(k), c) for w, i, k, c in rows]
