"""SQLite persistence: what one commit writes is exactly what a reopened store reads."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from pyrestate.core.changes import SEEN_COMPLETION, SEEN_SIGNAL, Changes, StateOp
from pyrestate.core.commands import Invoke, Retention
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
from pyrestate.storage import schema
from pyrestate.storage.sqlite import WAL_SIZE_LIMIT, SqlitePartitionStore, StorageError

INV = InvocationId(42, bytes(range(16)))
OTHER = InvocationId(43, bytes(16))


def _status(**kw: object) -> InvocationStatus:
    base: dict[str, object] = dict(
        id=INV,
        target=Target("Obj", "run", "k/1", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE),
        status=Status.SUSPENDED,
        created_at=1,
        modified_at=2,
        headers=(("x-a", "b"),),
        idempotency_key="idem",
        callers=(CallerRef(OTHER, 3),),
        journal_length=4,
        command_count=2,
        attempt=3,
        retry_count=1,
        last_failure=Failure(500, "boom"),
        waiting_completions=frozenset({1, 2}),
        waiting_signals=frozenset({17, "named"}),
        completions_seen={5},
        signals_seen={"x"},
        completion_retention=10,
        journal_retention=20,
    )
    base.update(kw)
    return InvocationStatus(**base)  # type: ignore[arg-type]


def test_a_committed_batch_reads_back_after_reopening(tmp_path: Path) -> None:
    store = SqlitePartitionStore(tmp_path / "p.db")
    st = _status()
    timer = TimerKey(99, INV.to_bytes(), TimerKind.SLEEP, 1)
    store.commit(
        Changes(
            statuses={INV: st},
            journal=[
                (INV, 0, JournalEntry(0x0400, b"in"), 1, None),
                (INV, 1, JournalEntry(0x8011, b"r"), 2, None),
            ],
            state=[
                StateOp("Obj", "k/1", b"a", b"1"),
                StateOp("Obj", "k/1", b"b", b"2"),
                StateOp("Obj", "k/1", b"a", None),
            ],
            timers_added=[timer],
            seen=[(INV, SEEN_COMPLETION, 5), (INV, SEEN_SIGNAL, "x")],
        )
    )
    store.close()

    store = SqlitePartitionStore(tmp_path / "p.db")
    assert store.invocation(INV) == st
    assert store.active_invocations() == [st]
    assert store.journal(INV, 2) == [JournalEntry(0x0400, b"in"), JournalEntry(0x8011, b"r")]
    assert store.journal(INV, 1) == [JournalEntry(0x0400, b"in")]
    assert store.state("Obj", "k/1") == {b"b": b"2"}
    assert store.timers() == [timer]


def test_completed_output_clear_all_and_purge(tmp_path: Path) -> None:
    store = SqlitePartitionStore(tmp_path / "p.db")
    done = _status(status=Status.COMPLETED, output=Output(value=b""), completed_at=5)
    failed = _status(id=OTHER, status=Status.COMPLETED, output=Output(failure=Failure(409, "no")))
    store.commit(
        Changes(
            statuses={INV: done, OTHER: failed},
            state=[StateOp("Obj", "k/1", b"a", b"1"), StateOp("Obj", "k/1", None, None)],
        )
    )
    assert store.invocation(INV).output == Output(value=b"")  # type: ignore[union-attr]
    assert store.invocation(OTHER).output == Output(failure=Failure(409, "no"))  # type: ignore[union-attr]
    assert store.active_invocations() == []
    assert store.state("Obj", "k/1") == {}
    store.commit(Changes(purged=[INV]))
    assert store.invocation(INV) is None
    assert store.journal(INV, 10) == []


def _v1_database(path: Path) -> None:
    """A database as pyrestate 0.1.0 left it: version-1 tables, user_version 0."""
    db = sqlite3.connect(path)
    db.executescript(schema._V1)
    suspended = dict(
        id=INV.to_bytes(), status="suspended", service="Obj", handler="run", key="k",
        service_type="virtual_object", handler_type="exclusive", created_at=1, modified_at=2,
        headers="[]", callers="[]", journal_length=3, command_count=1, attempt=1,
        retry_count=0, waiting="[[7], []]", seen='[[5], ["x"]]', completion_retention=10,
        journal_retention=20,
    )  # fmt: skip
    done = dict(suspended, id=OTHER.to_bytes(), status="completed", completed_at=100)
    done.update(output_value=b"out", waiting="[[], []]", seen="[[], []]")
    for row in (suspended, done):
        names = ", ".join(row)
        db.execute(f"INSERT INTO invocation ({names}) VALUES ({', '.join('?' * len(row))})",
                   tuple(row.values()))  # fmt: skip
    db.executemany(
        "INSERT INTO timer VALUES (?, ?, ?, ?)",
        [(50, INV.to_bytes(), "sleep", 7), (120, OTHER.to_bytes(), "cleanup", 0)],
    )
    db.commit()
    db.close()


def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    _v1_database(tmp_path / "p.db")
    store = SqlitePartitionStore(tmp_path / "p.db")
    assert store._writer.execute("PRAGMA user_version").fetchone()[0] == schema.LATEST
    (active,) = store.active_invocations()
    assert active.completions_seen == {5} and active.signals_seen == {"x"}
    assert active.waiting_completions == frozenset({7})
    assert store.timers() == [TimerKey(50, INV.to_bytes(), TimerKind.SLEEP, 7, life=1)]
    assert store.expired(119, 10) == [] and store.expired(120, 10) == [OTHER]
    store.close()


def test_a_version_4_database_keeps_its_journal_without_append_times(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "p.db", isolation_level=None)
    db.executescript(schema._V1)
    for step in schema._STEPS[:3]:
        step(db)
    db.execute("PRAGMA user_version = 4")
    db.execute("INSERT INTO journal VALUES (?, 0, 1024, x'0102')", (INV.to_bytes(),))
    db.close()
    store = SqlitePartitionStore(tmp_path / "p.db")
    assert store._writer.execute("PRAGMA user_version").fetchone()[0] == schema.LATEST
    assert store.journal(INV, 1) == [JournalEntry(0x0400, b"\x01\x02")]
    row = store._writer.execute("SELECT appended_at, callee FROM journal").fetchone()
    assert row == (None, None)
    store.close()


def test_journal_rows_keep_when_they_were_appended_and_a_calls_callee(tmp_path: Path) -> None:
    store = SqlitePartitionStore(tmp_path / "p.db")
    target = Target("Obj", "run", "k", ServiceType.VIRTUAL_OBJECT, HandlerType.SHARED)
    callee = Invoke(OTHER, target, b"", retention=Retention(1_000, 2_500))
    store.commit(
        Changes(
            journal=[
                (INV, 0, JournalEntry(0x0400, b"in"), 1_000, None),
                (INV, 1, JournalEntry(0x040D, b"call"), 1_007, callee),
            ]
        )
    )
    rows = store._writer.execute("SELECT idx, appended_at, callee FROM journal ORDER BY idx")
    (_, first_at, no_callee), (_, call_at, text) = rows.fetchall()
    assert (first_at, no_callee, call_at) == (1_000, None, 1_007)
    assert json.loads(text) == {
        "id": str(OTHER),
        "service_type": "virtual_object",
        "handler_type": "shared",
        "completion_retention": 1_000,
        "journal_retention": 2_500,
    }
    store.close()


def test_a_database_from_a_newer_pyrestate_is_refused(tmp_path: Path) -> None:
    SqlitePartitionStore(tmp_path / "p.db").close()
    db = sqlite3.connect(tmp_path / "p.db")
    db.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    db.close()
    with pytest.raises(schema.SchemaError, match="newer"):
        SqlitePartitionStore(tmp_path / "p.db")


def test_a_journal_index_written_twice_is_an_error_not_an_overwrite(tmp_path: Path) -> None:
    store = SqlitePartitionStore(tmp_path / "p.db")
    store.commit(Changes(journal=[(INV, 0, JournalEntry(0x0400, b"first"), 1, None)]))
    with pytest.raises(StorageError, match="twice"):
        store.commit(Changes(journal=[(INV, 0, JournalEntry(0x0400, b"second"), 2, None)]))
    assert store.journal(INV, 1) == [JournalEntry(0x0400, b"first")]
    store.close()


def test_large_state_is_not_read_whole_for_eager_sending(tmp_path: Path) -> None:
    store = SqlitePartitionStore(tmp_path / "p.db")
    store.commit(Changes(state=[StateOp("Obj", "k", bytes([i]), b"x" * 100) for i in range(10)]))
    assert store.state_within("Obj", "k", 10_000) == store.state("Obj", "k")
    assert store.state_within("Obj", "k", 500) is None
    store.close()


def test_the_wal_is_bounded_and_checked(tmp_path: Path) -> None:
    store = SqlitePartitionStore(tmp_path / "p.db")
    db = store._writer
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA journal_size_limit").fetchone()[0] == WAL_SIZE_LIMIT
    store.close()


def test_many_invocations_are_read_in_chunks_with_what_they_have_seen(tmp_path: Path) -> None:
    store = SqlitePartitionStore(tmp_path / "p.db")
    ids = [InvocationId(1, i.to_bytes(16, "big")) for i in range(1200)]
    store.commit(
        Changes(
            statuses={i: _status(id=i, callers=()) for i in ids},
            seen=[(ids[7], SEEN_COMPLETION, 3)],
        )
    )
    missing = InvocationId(2, bytes(16))
    found = store.invocations([*ids, missing])
    assert set(found) == set(ids)
    assert found[ids[7]].completions_seen == {3} and found[ids[8]].completions_seen == set()
    store.close()


def test_promises_metadata_and_waiting_mutations_read_back_after_reopening(
    tmp_path: Path,
) -> None:
    path = tmp_path / "p.db"
    store = SqlitePartitionStore(path)
    waiter = CallerRef(INV, 4, 1, 0x8009)
    failed = Output(failure=Failure(418, "teapot", (("b", "2"), ("a", "1"))))
    mutation = StateMutation(7, "Obj", "k/1", ((b"n", b"\x00\xff"),), "v1")
    changes = Changes(
        statuses={INV: _status(status=Status.COMPLETED, completed_at=5, output=failed)},
        promises={
            ("Wf", "w1", "waited"): Promise(None, (waiter,)),
            ("Wf", "w1", "done"): Promise(Output(value=b"v")),
            ("Wf", "w1", "failed"): Promise(failed),
        },
        mutations_queued=[mutation, replace(mutation, seq=8, version=None)],
    )
    store.commit(changes)
    store.commit(Changes(mutations_done=[8]))
    store.close()
    store = SqlitePartitionStore(path)
    assert store.promise("Wf", "w1", "waited") == Promise(None, (waiter,))
    assert store.promise("Wf", "w1", "done") == Promise(Output(value=b"v"))
    assert store.promise("Wf", "w1", "failed") == Promise(failed)
    assert store.promise("Wf", "w2", "done") is None
    st = store.invocation(INV)
    assert st is not None and st.output == failed
    assert store.pending_mutations() == [mutation]
    # A workflow cleared: its promises go with its state.
    store.commit(Changes(workflows_cleared=[("Wf", "w1")]))
    assert store.promise("Wf", "w1", "done") is None
