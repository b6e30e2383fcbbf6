"""SQLite persistence: what one commit writes is exactly what a reopened store reads."""

from __future__ import annotations

from pathlib import Path

from pyrestate.core.changes import Changes, StateOp
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
from pyrestate.storage.sqlite import SqlitePartitionStore

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
            journal=[(INV, 0, JournalEntry(0x0400, b"in")), (INV, 1, JournalEntry(0x8011, b"r"))],
            state=[
                StateOp("Obj", "k/1", b"a", b"1"),
                StateOp("Obj", "k/1", b"b", b"2"),
                StateOp("Obj", "k/1", b"a", None),
            ],
            timers_added=[timer],
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
