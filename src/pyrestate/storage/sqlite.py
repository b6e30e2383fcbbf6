"""SQLite persistence of one partition: the embedded default.

No semantics here: records in, records out. Writes arrive as one ``Changes`` batch per
transaction (group commit); reads use a second connection, which in WAL mode sees the
last committed state and never blocks the writer.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Set
from pathlib import Path

from pyrestate.core.changes import SEEN_COMPLETION, Changes
from pyrestate.core.commands import Invoke
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import (
    CallerRef,
    Failure,
    HandlerType,
    InvocationStatus,
    JournalEntry,
    Output,
    Promise,
    ServiceType,
    StateMutation,
    Status,
    Target,
    TimerKey,
    TimerKind,
)
from pyrestate.storage.schema import ensure_schema

_COLUMNS = (
    "id, status, service, handler, key, service_type, handler_type, created_at, modified_at, "
    "headers, idempotency_key, callers, execution_time, inbox_seq, running_at, completed_at, "
    "deployment_id, journal_length, command_count, attempt, retry_count, next_retry_at, "
    "last_failure_code, last_failure_message, last_failure_related, waiting, "
    "output_value, output_failure_code, output_failure_message, completion_retention, "
    "journal_retention, attempt_failures, last_progress_at, output_failure_metadata, "
    "subscription_id, trace"
)
_UPSERT = (
    f"INSERT OR REPLACE INTO invocation ({_COLUMNS}, expires_at) VALUES ("
    + ", ".join("?" * (len(_COLUMNS.split(",")) + 1))
    + ")"
)
_SELECT = f"SELECT {_COLUMNS} FROM invocation"
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is truncated to after a checkpoint
_CHUNK = 500  # ids per IN (...) query, below SQLite's bound on parameters


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
        _callers_text(st.callers),
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
        out.value if out is not None and out.failure is None else None,
        out.failure.code if out is not None and out.failure else None,
        out.failure.message if out is not None and out.failure else None,
        st.completion_retention,
        st.journal_retention,
        st.attempt_failures,
        st.last_progress_at,
        _metadata_text(out.failure) if out is not None and out.failure else None,
        st.subscription_id,
        st.trace,
        # When the retention sweep may delete it.
        st.completed_at + max(st.completion_retention, st.journal_retention)
        if st.completed_at is not None and st.status is Status.COMPLETED
        else None,
    )


def _callers_text(callers: tuple[CallerRef, ...]) -> str:
    if not callers:
        return "[]"
    return json.dumps([[str(c.invocation_id), c.completion_id, c.life, c.kind] for c in callers])


def _callers_from(text: str) -> tuple[CallerRef, ...]:
    # [id, completion] (schema 1), [id, completion, life] (2), [..., kind] (3)
    return tuple(CallerRef(InvocationId.parse(c[0]), *c[1:]) for c in json.loads(text))


def _callee_text(callee: Invoke | None) -> str | None:
    if callee is None:
        return None
    target = callee.target
    return json.dumps(
        {
            "id": str(callee.invocation_id),
            "service_type": target.service_type.value,
            "handler_type": target.handler_type and target.handler_type.value,
            "completion_retention": callee.retention.completion_ms,
            "journal_retention": callee.retention.journal_ms,
        }
    )


def _metadata_text(failure: Failure) -> str | None:
    return json.dumps(failure.metadata) if failure.metadata else None


def _failure(code: int, message: str, metadata: str | None) -> Failure:
    meta = tuple(tuple(kv) for kv in json.loads(metadata)) if metadata else ()
    return Failure(code, message, meta)  # type: ignore[arg-type]


def _pair(completions: Set[int], signals: Set[int | str]) -> str:
    """Completion and signal ids as one JSON text; most invocations have none."""
    if not completions and not signals:
        return "[[], []]"
    ordered = sorted(signals, key=lambda s: (isinstance(s, str), s))
    return json.dumps([sorted(completions), ordered])


def _status_from_row(r: tuple) -> InvocationStatus:  # type: ignore[type-arg]
    waiting = json.loads(r[25])
    output = None
    if r[27] is not None:
        output = Output(failure=_failure(r[27], r[28], r[33]))
    elif r[1] == Status.COMPLETED.value:
        output = Output(value=r[26] or b"")
    return InvocationStatus(
        id=InvocationId.from_bytes(r[0]),
        status=Status(r[1]),
        target=Target(r[2], r[3], r[4], ServiceType(r[5]), HandlerType(r[6]) if r[6] else None),
        created_at=r[7],
        modified_at=r[8],
        headers=tuple(tuple(h) for h in json.loads(r[9])),  # type: ignore[misc]
        idempotency_key=r[10],
        subscription_id=r[34],
        trace=r[35],
        callers=_callers_from(r[11]),
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
        output=output,
        completion_retention=r[29],
        journal_retention=r[30],
        attempt_failures=r[31],
        last_progress_at=r[32],
    )


_SYNCHRONOUS_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


class StorageError(RuntimeError):
    """Storage found something that must never happen (a bug, or a damaged database)."""


class SqlitePartitionStore:
    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StorageError(f"{path}: cannot use WAL mode (journal_mode is {mode})")
        self._writer.execute(f"PRAGMA synchronous={synchronous}")
        # Read back, so what is logged is what SQLite does, not what was asked for.
        level = self._writer.execute("PRAGMA synchronous").fetchone()[0]
        self.synchronous = _SYNCHRONOUS_NAMES.get(level, str(level))
        # Checkpoint often enough, and cut the WAL file back after a burst.
        self._writer.execute("PRAGMA wal_autocheckpoint=1000")
        self._writer.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        ensure_schema(self._writer)
        # One reader connection per thread: the loop thread and worker threads read at once.
        self._readers = threading.local()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._write_lock = threading.Lock()

    @property
    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA query_only=1")
            self._readers.db = db
            with self._readers_lock:
                self._all_readers.append(db)
        return db

    def close(self) -> None:
        with self._readers_lock:
            for db in self._all_readers:
                db.close()
            self._all_readers.clear()
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
            _delete_invocations(db, [(i.to_bytes(),) for i in c.purged])
        if c.expired:
            gone = []
            for inv in c.expired:
                raw = inv.to_bytes()
                # Only if still completed: the id may have started a new life meanwhile.
                row = db.execute(
                    "DELETE FROM invocation WHERE id = ? AND status = 'completed' "
                    "RETURNING service, key, handler_type",
                    (raw,),
                ).fetchone()
                if row is not None:
                    gone.append((raw,))
                    if row[2] == HandlerType.WORKFLOW.value:
                        _clear_workflow(db, row[0], row[1])
            _delete_invocations(db, gone)
        for service, key in c.workflows_cleared:
            _clear_workflow(db, service, key)
        if c.mutations_queued:
            db.executemany(
                "INSERT INTO state_mutation (seq, service, key, version, state) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        m.seq,
                        m.service,
                        m.key,
                        m.version,
                        json.dumps([[k.hex(), v.hex()] for k, v in m.state]),
                    )
                    for m in c.mutations_queued
                ],
            )
        if c.mutations_done:
            db.executemany(
                "DELETE FROM state_mutation WHERE seq = ?", [(seq,) for seq in c.mutations_done]
            )
        if c.journals_purged:
            db.executemany(
                "DELETE FROM journal WHERE id = ?", [(i.to_bytes(),) for i in c.journals_purged]
            )
        if c.producers:
            db.executemany(
                "INSERT OR REPLACE INTO producer (id, seq) VALUES (?, ?)", c.producers.items()
            )
        if c.statuses:
            db.executemany(_UPSERT, [_status_row(st) for st in c.statuses.values()])
        if c.journal:
            try:
                db.executemany(
                    "INSERT INTO journal (id, idx, type, body, appended_at, callee) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (i.to_bytes(), idx, e.type, e.body, at, _callee_text(callee))
                        for i, idx, e, at, callee in c.journal
                    ],
                )
            except sqlite3.IntegrityError as e:
                # An entry index written twice means the machine lost count: never overwrite.
                raise StorageError(f"journal index written twice: {e}") from e
        if c.seen:
            db.executemany(
                "INSERT OR IGNORE INTO seen (id, kind, value) VALUES (?, ?, ?)",
                [(i.to_bytes(), kind, value) for i, kind, value in c.seen],
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
        if c.promises:
            db.executemany(
                "INSERT OR REPLACE INTO promise (service, key, name, completed, value, "
                "failure_code, failure_message, failure_metadata, listeners) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*k, *_promise_row(p)) for k, p in c.promises.items()],
            )
        if c.timers_added:
            db.executemany(
                "INSERT OR REPLACE INTO timer (wake_at, id, kind, completion_id, life) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (t.wake_at, t.invocation_id, t.kind.value, t.completion_id, t.life)
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

    # --- Reads (the machine's Loader, the invoker, recovery, the retention sweep)

    def invocation(self, invocation_id: InvocationId) -> InvocationStatus | None:
        """The record (with what it has seen, if not completed), None if there is none."""
        row = self._reader.execute(
            _SELECT + " WHERE id = ?", (invocation_id.to_bytes(),)
        ).fetchone()
        if row is None:
            return None
        st = _status_from_row(row)
        if not st.is_completed:
            self._add_seen([st])
        return st

    def invocations(self, ids: Iterable[InvocationId]) -> dict[InvocationId, InvocationStatus]:
        """Those of ``ids`` that exist; one query per chunk, not per id (timers fire in
        bursts of thousands)."""
        found = [_status_from_row(r) for r in self._rows_by_id(_SELECT, ids)]
        self._add_seen([st for st in found if not st.is_completed])
        return {st.id: st for st in found}

    def _rows_by_id(self, select: str, ids: Iterable[InvocationId]) -> list[tuple]:  # type: ignore[type-arg]
        """Rows of ``select ... WHERE id IN (...)``, one query per chunk of ids."""
        wanted = [inv.to_bytes() for inv in ids]
        rows = []
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows.extend(self._reader.execute(f"{select} WHERE id IN ({marks})", chunk))
        return rows

    def state(self, service: str, key: str) -> dict[bytes, bytes]:
        state = self.state_within(service, key, None)
        assert state is not None
        return state

    def state_within(self, service: str, key: str, limit: int | None) -> dict[bytes, bytes] | None:
        """An object's state; None if it is larger than ``limit`` bytes (not read whole)."""
        rows = self._reader.execute(
            "SELECT name, value FROM state WHERE service = ? AND key = ?", (service, key)
        )
        out: dict[bytes, bytes] = {}
        size = 0
        for n, v in rows:
            size += len(n) + len(v)
            if limit is not None and size > limit:
                return None
            out[bytes(n)] = bytes(v)
        return out

    def promise(self, service: str, key: str, name: str) -> Promise | None:
        row = self._reader.execute(
            "SELECT completed, value, failure_code, failure_message, failure_metadata, listeners "
            "FROM promise WHERE service = ? AND key = ? AND name = ?",
            (service, key, name),
        ).fetchone()
        if row is None:
            return None
        completed, value, code, message, metadata, listeners = row
        output = None
        if code is not None:
            output = Output(failure=_failure(code, message, metadata))
        elif completed:
            output = Output(value=bytes(value or b""))
        return Promise(output, _callers_from(listeners))

    def journal(self, invocation_id: InvocationId, length: int) -> list[JournalEntry]:
        rows = self._reader.execute(
            "SELECT type, body FROM journal WHERE id = ? AND idx < ? ORDER BY idx",
            (invocation_id.to_bytes(), length),
        )
        return [JournalEntry(t, bytes(b)) for t, b in rows]

    def pending_mutations(self) -> list[StateMutation]:
        """Operators' state mutations still waiting for their object key, in order."""
        rows = self._reader.execute(
            "SELECT seq, service, key, version, state FROM state_mutation ORDER BY seq"
        )
        return [
            StateMutation(
                seq,
                service,
                key,
                tuple((bytes.fromhex(k), bytes.fromhex(v)) for k, v in json.loads(state)),
                version,
            )
            for seq, service, key, version, state in rows
        ]

    def producers(self) -> dict[str, int]:
        """The latest sequence number accepted per producer."""
        return dict(self._reader.execute("SELECT id, seq FROM producer"))

    def active_invocations(self) -> list[InvocationStatus]:
        """What must be in memory after a start: not completed, not merely scheduled."""
        rows = self._reader.execute(
            _SELECT + " WHERE status != 'completed' AND status != 'scheduled'"
        )
        active = [_status_from_row(r) for r in rows]
        self._add_seen(active)
        return active

    def _add_seen(self, statuses: list[InvocationStatus]) -> None:
        by_id = {st.id.to_bytes(): st for st in statuses}
        rows = self._rows_by_id("SELECT id, kind, value FROM seen", (st.id for st in statuses))
        for raw, kind, value in rows:
            st = by_id[bytes(raw)]
            if kind == SEEN_COMPLETION:
                st.completions_seen.add(value)
            else:
                st.signals_seen.add(value)

    def timers(self, before: int | None = None, since: int | None = None) -> list[TimerKey]:
        """Timers due in ``[since, before)`` (either bound open), earliest first."""
        rows = self._reader.execute(
            "SELECT wake_at, id, kind, completion_id, life FROM timer "
            "WHERE wake_at >= ? AND wake_at < ? ORDER BY wake_at",
            (-(2**63) if since is None else since, 2**63 - 1 if before is None else before),
        )
        return [TimerKey(w, bytes(i), TimerKind(k), c, life) for w, i, k, c, life in rows]

    def expired(self, now: int, limit: int) -> list[InvocationId]:
        """Completed invocations whose retention ended by ``now``, oldest first."""
        rows = self._reader.execute(
            "SELECT id FROM invocation WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
            (now, limit),
        )
        return [InvocationId.from_bytes(r[0]) for r in rows]


def _promise_row(p: Promise) -> tuple[object, ...]:
    out = p.output
    failure = out.failure if out is not None else None
    return (
        out is not None,
        out.value if out is not None and failure is None else None,
        failure.code if failure else None,
        failure.message if failure else None,
        _metadata_text(failure) if failure else None,
        _callers_text(p.listeners),
    )


def _clear_workflow(db: sqlite3.Connection, service: str, key: str) -> None:
    for table in ("state", "promise"):
        db.execute(f"DELETE FROM {table} WHERE service = ? AND key = ?", (service, key))


def _delete_invocations(db: sqlite3.Connection, ids: list[tuple[bytes]]) -> None:
    """Everything of these invocations: record, journal, seen notifications, timers."""
    if not ids:
        return
    for table in ("invocation", "journal", "seen", "timer"):
        db.executemany(f"DELETE FROM {table} WHERE id = ?", ids)
