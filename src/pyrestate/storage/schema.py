"""The SQLite schema of a partition, versioned with ``PRAGMA user_version``.

A new database is created at the latest version; an older one is migrated step by step in
one transaction per step. A database from a newer pyrestate is refused, not guessed at.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable

# Version 1: what pyrestate 0.1.0 wrote (its user_version was left at 0).
_V1 = """
CREATE TABLE invocation (
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
CREATE INDEX invocation_active ON invocation(status) WHERE status != 'completed';
CREATE TABLE journal (
    id BLOB NOT NULL,
    idx INTEGER NOT NULL,
    type INTEGER NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (id, idx)
) WITHOUT ROWID;
CREATE TABLE state (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    name BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (service, key, name)
) WITHOUT ROWID;
CREATE TABLE timer (
    wake_at INTEGER NOT NULL,
    id BLOB NOT NULL,
    kind TEXT NOT NULL,
    completion_id INTEGER NOT NULL,
    PRIMARY KEY (wake_at, id, kind, completion_id)
) WITHOUT ROWID;
"""

# Version 2: notifications seen become rows (one insert per step, not a re-encoded set);
# retention is an indexed expiry swept in storage instead of a timer per completion;
# timers carry the life of their invocation and can be found by invocation.
_V1_TO_V2 = """
ALTER TABLE invocation ADD COLUMN attempt_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invocation ADD COLUMN last_progress_at INTEGER;
ALTER TABLE invocation ADD COLUMN expires_at INTEGER;
UPDATE invocation SET expires_at = completed_at + max(completion_retention, journal_retention)
    WHERE status = 'completed';
CREATE INDEX invocation_expiry ON invocation(expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE seen (
    id BLOB NOT NULL,
    kind INTEGER NOT NULL,
    value NOT NULL,
    PRIMARY KEY (id, kind, value)
) WITHOUT ROWID;
DELETE FROM timer WHERE kind = 'cleanup';
ALTER TABLE timer ADD COLUMN life INTEGER NOT NULL DEFAULT 0;
UPDATE timer SET life = coalesce(
    (SELECT created_at FROM invocation WHERE invocation.id = timer.id), 0);
CREATE INDEX timer_by_id ON timer(id);
"""


# Version 3: workflows' durable promises; terminal failures keep their metadata.
_V2_TO_V3 = """
ALTER TABLE invocation ADD COLUMN output_failure_metadata TEXT;
CREATE TABLE promise (
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    name TEXT NOT NULL,
    completed INTEGER NOT NULL,
    value BLOB,
    failure_code INTEGER,
    failure_message TEXT,
    failure_metadata TEXT,
    listeners TEXT NOT NULL,
    PRIMARY KEY (service, key, name)
) WITHOUT ROWID;
"""


# Version 4: operators' state mutations waiting for a busy object key.
_V3_TO_V4 = """
CREATE TABLE state_mutation (
    seq INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    key TEXT NOT NULL,
    version TEXT,
    state TEXT NOT NULL
);
"""


# Version 5: when each journal entry was appended, and for calls and sends the callee they
# started (its id, type and retention: what sys_journal shows of a call besides its body);
# invocations by service and status, covering what introspection counts per handler (a
# service's invocations in some statuses are index ranges, not a scan of the table).
_V4_TO_V5 = """
ALTER TABLE journal ADD COLUMN appended_at INTEGER;
ALTER TABLE journal ADD COLUMN callee TEXT;
CREATE INDEX invocation_target ON invocation(service, status, handler, created_at);
"""


# Version 6: invocations by creation time, for lists newest first (ORDER BY created_at
# DESC LIMIT n reads n index entries, not the table).
_V5_TO_V6 = """
CREATE INDEX invocation_created ON invocation(created_at);
"""


# Version 7: invocations started by a Kafka subscription, and the latest record offset
# accepted per subscribed topic partition (records delivered again are dropped).
_V6_TO_V7 = """
ALTER TABLE invocation ADD COLUMN subscription_id TEXT;
CREATE TABLE producer (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
"""


# Version 8: each invocation's place in a distributed trace (telemetry/trace_context.py).
_V7_TO_V8 = """
ALTER TABLE invocation ADD COLUMN trace TEXT;
"""


def _seen_to_rows(db: sqlite3.Connection) -> None:
    """Version 1 kept seen ids as JSON in the invocation row; move them to their table."""
    rows = db.execute("SELECT id, seen FROM invocation WHERE status != 'completed'").fetchall()
    for inv, text in rows:
        completions, signals = json.loads(text)
        db.executemany(
            "INSERT INTO seen (id, kind, value) VALUES (?, ?, ?)",
            [(inv, 0, c) for c in completions] + [(inv, 1, s) for s in signals],
        )
    db.execute("ALTER TABLE invocation DROP COLUMN seen")


def _run(db: sqlite3.Connection, script: str) -> None:
    # Statement by statement: executescript() would commit the surrounding transaction.
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)


def _migrate_1_to_2(db: sqlite3.Connection) -> None:
    _run(db, _V1_TO_V2)
    _seen_to_rows(db)


def _migrate_2_to_3(db: sqlite3.Connection) -> None:
    _run(db, _V2_TO_V3)


def _migrate_3_to_4(db: sqlite3.Connection) -> None:
    _run(db, _V3_TO_V4)


def _migrate_4_to_5(db: sqlite3.Connection) -> None:
    _run(db, _V4_TO_V5)


def _migrate_5_to_6(db: sqlite3.Connection) -> None:
    _run(db, _V5_TO_V6)


def _migrate_6_to_7(db: sqlite3.Connection) -> None:
    _run(db, _V6_TO_V7)


def _migrate_7_to_8(db: sqlite3.Connection) -> None:
    _run(db, _V7_TO_V8)


# _STEPS[n] takes a database from version n + 1 to n + 2.
_STEPS: list[Callable[[sqlite3.Connection], None]] = [
    _migrate_1_to_2,
    _migrate_2_to_3,
    _migrate_3_to_4,
    _migrate_4_to_5,
    _migrate_5_to_6,
    _migrate_6_to_7,
    _migrate_7_to_8,
]
LATEST = len(_STEPS) + 1


class SchemaError(RuntimeError):
    pass


def ensure_schema(db: sqlite3.Connection) -> None:
    """Create or migrate the partition schema to ``LATEST`` (``db`` in autocommit mode)."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        # New, or written by 0.1.0 (which had version 1's tables and no version number).
        db.execute("BEGIN IMMEDIATE")
        has_tables = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'invocation'"
        ).fetchone()[0]
        if not has_tables:
            _run(db, _V1)
        db.execute("PRAGMA user_version = 1")
        db.execute("COMMIT")
        version = 1
    if version > LATEST:
        raise SchemaError(
            f"the database has schema version {version}, newer than this pyrestate "
            f"understands ({LATEST}); use a newer pyrestate"
        )
    while version < LATEST:
        db.execute("BEGIN IMMEDIATE")
        try:
            _STEPS[version - 1](db)
            db.execute(f"PRAGMA user_version = {version + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        version += 1
