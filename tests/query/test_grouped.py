"""Aggregates that storage does part of (query/grouped.py): the same answers as reading
every row, and only where the plan allows it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from query_fixtures import T0, fill

from pyrestate.query import grouped
from pyrestate.query.engine import QueryEngine
from pyrestate.query.tables import PartitionSource, RegistrySnapshot
from pyrestate.storage.sqlite import SqlitePartitionStore


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[QueryEngine]:
    stores = [SqlitePartitionStore(tmp_path / f"p{i}" / "partition-0.db") for i in range(2)]
    fill(stores[0], extra_completed=40)
    fill(stores[1], extra_completed=3)
    yield QueryEngine([PartitionSource(s.path) for s in stores], "1.7.12")
    for s in stores:
        s.close()


def _answer(engine: QueryEngine, sql: str) -> Any:
    answer = engine.run(sql, RegistrySnapshot(), True)
    assert answer.status == 200, answer.body
    return json.loads(answer.body)["rows"]


def _both(engine: QueryEngine, sql: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, bool]:
    """The answer with storage grouping and without, and whether it grouped."""
    plans: list[grouped.GroupedRead | None] = []
    plan = grouped.plan

    def spy(*args: Any, **kwargs: Any) -> grouped.GroupedRead | None:
        plans.append(plan(*args, **kwargs))
        return plans[-1]

    with monkeypatch.context() as m:
        m.setattr(grouped, "plan", spy)
        with_groups = _answer(engine, sql)
    with monkeypatch.context() as m:
        m.setattr(grouped, "plan", lambda *a, **k: None)
        without = _answer(engine, sql)
    # The same rows (in the same order where the query orders them).
    assert sorted(map(str, with_groups)) == sorted(map(str, without)), sql
    if "ORDER BY" in sql:
        assert with_groups == without, sql
    return with_groups, any(p is not None for p in plans)


GROUPED = [
    "SELECT target_service_name, target_handler_name, status, COUNT(1) AS n, "
    "MIN(created_at) AS oldest FROM sys_invocation WHERE target_service_name IN ('Greeter') "
    "GROUP BY target_service_name, target_handler_name, status ORDER BY status",
    "SELECT status, count(*), min(modified_at), max(completed_at), count(completed_at) "
    "FROM sys_invocation GROUP BY status ORDER BY status",
    "SELECT count(*) AS n FROM sys_invocation WHERE status = 'running'",
    f"SELECT target_service_name, count(running_at), max(retry_count) FROM sys_invocation "
    f"WHERE created_at >= to_timestamp_millis({T0}) AND status != 'completed' "
    "GROUP BY target_service_name ORDER BY 1",
    "SELECT status, count(*) FROM sys_invocation_status GROUP BY status HAVING count(*) > 1 "
    "ORDER BY status",
    # Grouped by a value computed in Python from several stored ones (finer groups).
    "SELECT invoked_by, count(*) FROM sys_invocation GROUP BY invoked_by",
    "SELECT entry_type, version, count(*) FROM sys_journal GROUP BY entry_type, version "
    "ORDER BY entry_type",
    "SELECT min(in_flight), max(in_flight), count(*) FROM sys_invocation_state",
    "SELECT service_name, count(*), max(value_length), min(service_key) FROM state "
    "GROUP BY service_name",
]


@pytest.mark.parametrize("sql", GROUPED)
def test_grouped_in_storage_answers_as_reading_every_row(
    engine: QueryEngine, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer, did_group = _both(engine, sql, monkeypatch)
    assert did_group
    assert answer


NOT_GROUPED = [
    # Only count, min and max of columns can be done by group.
    "SELECT status, sum(retry_count) FROM sys_invocation GROUP BY status",
    "SELECT count(DISTINCT target_service_name) FROM sys_invocation",
    "SELECT status, count(*) FILTER (WHERE target_service_name = 'Counter') FROM sys_invocation "
    "GROUP BY status",
    "SELECT target_service_name, FIRST_VALUE(id ORDER BY created_at) FROM sys_invocation "
    "GROUP BY target_service_name",
    # Values shown after a conversion in Python: SQLite's minimum is not the shown one.
    "SELECT min(id) FROM sys_invocation",
    "SELECT service_name, min(key) FROM state GROUP BY service_name",
    # A filter storage cannot take whole, or an expression to group by.
    "SELECT count(*) FROM sys_invocation WHERE lower(target_service_name) = 'counter'",
    "SELECT count(*) FROM sys_invocation WHERE status = 'running' OR retry_count > 2",
    "SELECT length(target), count(*) FROM sys_invocation GROUP BY length(target)",
]


@pytest.mark.parametrize("sql", NOT_GROUPED)
def test_other_aggregates_read_every_row(
    engine: QueryEngine, sql: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, did_group = _both(engine, sql, monkeypatch)
    assert not did_group


def test_stand_ins_count_min_max_and_nulls(engine: QueryEngine) -> None:
    got = _answer(
        engine,
        "SELECT status, count(*) AS n, count(completed_at) AS done, min(created_at) AS lo "
        "FROM sys_invocation_status GROUP BY status ORDER BY status",
    )
    by_status = {r["status"]: r for r in got}
    assert by_status["completed"]["n"] == 2 * 2 + 43 and by_status["invoked"]["n"] == 4
    assert by_status["invoked"]["done"] == 0 and "lo" in by_status["invoked"]


def test_a_limit_over_a_filter_storage_cannot_take_whole(engine: QueryEngine) -> None:
    # Storage must not stop at the limit when DataFusion still filters the rows it gives.
    got = _answer(
        engine,
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Counter' "
        "AND lower(target_handler_name) = 'add' LIMIT 1",
    )
    assert len(got) == 1
