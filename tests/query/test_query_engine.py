"""The engine over a real partition store: official tables, JSON rules, pushdown, errors."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pyarrow as pa
import pytest
from query_fixtures import T0, Filled, fill

from pyrestate.query.engine import QueryEngine
from pyrestate.query.tables import PartitionSource, RegistrySnapshot
from pyrestate.storage.sqlite import SqlitePartitionStore

# Captured from the official server 1.7.12 (a copy of shared/reference's file).
REFERENCE = Path(__file__).parent / "fixtures" / "official-sql-columns-1.7.12.json"
NO_REGISTRY = RegistrySnapshot()
REGISTRY = RegistrySnapshot(
    services=[{"name": "Greeter", "revision": 1, "public": True, "ty": "service",
               "deployment_id": "dp_11Q30N86eKctR8CklaU5QZj"}],
    deployments=[{"id": "dp_11Q30N86eKctR8CklaU5QZj", "ty": "http",
                  "endpoint": "http://127.0.0.1:9080/", "created_at": T0,
                  "min_service_protocol_version": 5, "max_service_protocol_version": 6,
                  "services": ["Greeter"], "protocol_version": 6}],
    restate_version="1.7.12",
)  # fmt: skip
TABLES = [
    "sys_invocation", "sys_invocation_status", "sys_invocation_state", "sys_journal", "state",
    "sys_inbox", "sys_keyed_service_status", "sys_promise", "sys_service", "sys_deployment",
]  # fmt: skip
ARROW_TYPE_NAMES = {
    "uint64": "UInt64", "uint32": "UInt32", "bool": "Boolean", "large_string": "LargeUtf8",
    "large_binary": "LargeBinary", "timestamp[ms, tz=+00:00]": 'Timestamp(ms, "+00:00")',
    "duration[ms]": "Duration(ms)", "list<item: uint32>": "List(UInt32)",
    "list<item: large_string>": "List(LargeUtf8)",
}  # fmt: skip


def rows(engine: QueryEngine, sql: str, registry: RegistrySnapshot = NO_REGISTRY) -> list[dict]:
    answer = engine.run(sql, registry, True)
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/json"
    return json.loads(answer.body)["rows"]


def arrow(engine: QueryEngine, sql: str) -> pa.Table:
    answer = engine.run(sql, REGISTRY, False)
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/vnd.apache.arrow.stream"
    return pa.ipc.open_stream(answer.body).read_all()


@pytest.mark.parametrize("table", TABLES)
def test_each_table_answers_with_the_official_columns(engine: QueryEngine, table: str) -> None:
    official: dict[str, str] = {}
    for c in json.loads(REFERENCE.read_text()):
        if c["table_name"] == table:
            official[c["column_name"]] = c["data_type"]
    got = arrow(engine, f"SELECT * FROM {table} LIMIT 5")
    mine = {f.name: ARROW_TYPE_NAMES[str(f.type)] for f in got.schema}
    assert mine == official
    if table not in ("sys_invocation_state",):
        assert got.num_rows > 0


def test_information_schema_lists_every_official_column(engine: QueryEngine) -> None:
    got = rows(engine, "SELECT table_name, column_name FROM information_schema.columns "
                       "WHERE table_schema = 'public'")  # fmt: skip
    tables: dict[str, set[str]] = defaultdict(set)
    for r in got:
        tables[r["table_name"]].add(r["column_name"])
    assert len(tables["sys_invocation"]) == 51
    # What `restate invocations describe` asks before it reads the journal.
    q = ("SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'sys_journal' "
         "AND column_name IN ('version', 'entry_json', 'appended_at')")  # fmt: skip
    assert arrow(engine, q).column(0).to_pylist() == [3]


def test_completed_invocation_row_follows_the_official_json_rules(
    engine: QueryEngine, filled: Filled
) -> None:
    inv = str(filled.ids["completed"])
    (row,) = rows(engine, f"SELECT * FROM sys_invocation WHERE id = '{inv}'", REGISTRY)
    assert row["id"] == inv
    assert row["target"] == "Greeter/greet"
    assert row["target_service_ty"] == "service"
    assert row["status"] == "completed"
    assert row["completion_result"] == "success"
    assert row["invoked_by"] == "ingress"
    assert row["pinned_service_protocol_version"] == 6
    assert row["created_at"] == "2026-11-22T06:10:23.812Z"
    assert row["completed_at"] == "2026-11-22T06:10:23.817Z"
    assert row["completion_retention"] == "PT86400S"
    # NULL columns are left out, not written as null.
    assert "retry_count" not in row and "last_failure" not in row
    assert None not in row.values()


def test_statuses_as_the_official_view_shows_them(engine: QueryEngine, filled: Filled) -> None:
    got = {r["id"]: r for r in rows(engine, "SELECT * FROM sys_invocation")}
    shown = {name: got[str(inv)]["status"] for name, inv in filled.ids.items()}
    assert shown == {
        "completed": "completed", "failed": "completed", "running": "running",
        "inboxed": "pending", "suspended": "suspended", "backing_off": "backing-off",
        "scheduled": "scheduled",
    }  # fmt: skip
    failed = got[str(filled.ids["failed"])]
    assert failed["completion_result"] == "failure"
    assert failed["completion_failure"] == "[409] nope"
    backing_off = got[str(filled.ids["backing_off"])]
    assert backing_off["retry_count"] == 3
    assert backing_off["last_failure"] == "[500 Internal] boom"  # as the official names it
    # The SDK reported it (it named a command): the official's code for a handler's error.
    assert backing_off["last_failure_error_code"] == "RT0007"
    # The official fills these only for journals of protocol 3 and older.
    assert not any(k.startswith("last_failure_related_entry") for k in backing_off)
    # The command the SDK named with its failure (a Run, 0x0411).
    related = {k: v for k, v in backing_off.items() if k.startswith("last_failure_related_command")}
    assert related == {
        "last_failure_related_command_index": 2,
        "last_failure_related_command_name": "charge",
        "last_failure_related_command_type": "Run",
    }
    suspended = got[str(filled.ids["suspended"])]
    assert suspended["suspended_waiting_for_completions"] == [1, 2]
    assert suspended["suspended_waiting_for_signals"] == [17]
    raw = rows(engine, "SELECT status FROM sys_invocation_status ORDER BY status")
    assert [r["status"] for r in raw] == [
        "completed", "completed", "inboxed", "invoked", "invoked", "scheduled", "suspended",
    ]  # fmt: skip


def test_state_journal_inbox_locks_promises(engine: QueryEngine, filled: Filled) -> None:
    # `restate kv get Counter k1`
    q = "select key, value from state where service_name = 'Counter' and service_key = 'k1' ;"
    assert rows(engine, q) == [{"key": "count", "value": "3130"}]
    (k2,) = rows(engine, "SELECT * FROM state WHERE service_key = 'k2'")
    assert k2["value"] == "ff00" and "value_utf8" not in k2 and k2["value_length"] == 2
    inv = str(filled.ids["completed"])
    journal = rows(engine, f"SELECT * FROM sys_journal WHERE id = '{inv}' ORDER BY index")
    assert [j["entry_type"] for j in journal] == ["Command: Input", "Command: Output"]
    first, last = journal
    assert first["version"] == 2 and first["raw"] == first["raw"].lower()
    assert first["name"] == "" and first["appended_at"] == "2026-11-22T06:10:23.812Z"
    assert last["appended_at"] == "2026-11-22T06:10:23.817Z"
    assert (
        first["entry_json"]
        == '{"Command":{"Input":{"headers":[],"payload":[34,120,34],"name":""}}}'
    )
    assert first["entry_lite_json"] == '{"Command":{"Input":{}}}'
    assert last["entry_lite_json"] == '{"Command":{"Output":{"result":"Success"}}}'
    # NULL in the official's rows of protocol 4+ journals, and so here.
    legacy = {"completed", "invoked_id", "invoked_target", "sleep_wakeup_at", "promise_name"}
    assert not legacy & set(first)
    (inbox,) = rows(engine, "SELECT * FROM sys_inbox")
    assert inbox["id"] == str(filled.ids["inboxed"]) and inbox["sequence_number"] == 3
    (lock,) = rows(engine, "SELECT * FROM sys_keyed_service_status")
    assert lock["invocation_id"] == str(filled.ids["running"])
    (promise,) = rows(engine, "SELECT * FROM sys_promise")
    assert promise["completed"] is True
    assert promise["completion_success_value_utf8"] == '"done"'


def test_registry_tables(engine: QueryEngine) -> None:
    (svc,) = rows(engine, "SELECT * FROM sys_service", REGISTRY)
    assert svc == {"name": "Greeter", "revision": 1, "public": True, "ty": "service",
                   "deployment_id": "dp_11Q30N86eKctR8CklaU5QZj"}  # fmt: skip
    (dp,) = rows(engine, "SELECT * FROM sys_deployment", REGISTRY)
    assert dp["services"] == ["Greeter"] and dp["created_at"] == "2026-11-22T06:10:23.812Z"


def test_plain_selects_and_arrow_names(engine: QueryEngine) -> None:
    assert rows(engine, "SELECT 1") == [{"Int64(1)": 1}]
    assert rows(engine, "SELECT * FROM sys_invocation WHERE id = 'nope'") == []
    got = arrow(engine, "SELECT COUNT(*) FROM sys_invocation")
    assert got.schema.names == ["count(*)"] and got.column(0).to_pylist() == [7]


@pytest.mark.parametrize(
    ("sql", "status", "message"),
    [
        ("SELEC garbage", 400,
         'Datafusion error: SQL error: ParserError("Expected: an SQL statement, found: SELEC '
         'at Line: 1, Column: 1")'),
        ("SELECT * FROM nope", 500,
         "Datafusion error: Error during planning: table 'restate.public.nope' not found"),
        ("CREATE TABLE t (a INT)", 400, None),
        ("SELECT count(*) FROM generate_series(1, 100000000000)", 400, None),
    ],
)  # fmt: skip
def test_errors(engine: QueryEngine, sql: str, status: int, message: str | None) -> None:
    answer = engine.run(sql, NO_REGISTRY, True)
    assert answer.status == status, answer.body
    body = json.loads(answer.body)
    assert list(body) == ["message"]
    if message is not None:
        assert body["message"] == message


# --- what reaches storage


def test_filters_and_limits_reach_storage(engine: QueryEngine, filled: Filled) -> None:
    inv = str(filled.ids["running"])
    by_id = engine.run(f"SELECT * FROM sys_invocation WHERE id = '{inv}'", NO_REGISTRY, True)
    assert by_id.rows_read == 1
    cases = {
        "SELECT id FROM sys_invocation WHERE status = 'running'": 1,
        "SELECT id FROM sys_invocation WHERE status IN ('pending', 'backing-off')": 2,
        "SELECT id FROM sys_invocation WHERE status != 'completed'": 5,
        "SELECT id FROM sys_invocation WHERE target = 'Counter/k1/add'": 2,
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Counter'": 2,
        "SELECT * FROM sys_invocation LIMIT 2": 2,
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Greeter' LIMIT 1": 1,
        "SELECT * FROM state WHERE service_name = 'Counter' AND service_key = 'k1'": 1,
        f"SELECT * FROM sys_journal WHERE id = '{filled.ids['completed']}'": 2,
    }
    for sql, expected in cases.items():
        answer = engine.run(sql, NO_REGISTRY, True)
        assert answer.status == 200, answer.body
        assert answer.rows_read == expected, sql


def test_a_predicate_storage_cannot_take_is_still_applied(engine: QueryEngine) -> None:
    got = rows(engine, "SELECT id FROM sys_invocation WHERE status = 'running' OR retry_count > 2")
    assert len(got) == 2


def test_queries_span_every_partition(tmp_path: Path) -> None:
    stores = [SqlitePartitionStore(tmp_path / f"p{i}" / "partition-0.db") for i in range(2)]
    try:
        fill(stores[0])
        fill(stores[1], extra_completed=3)
        engine = QueryEngine([PartitionSource(s.path) for s in stores], "1.7.12")
        assert rows(engine, "SELECT count(*) AS n FROM sys_invocation") == [{"n": 17}]
        assert len(rows(engine, "SELECT id FROM sys_invocation LIMIT 9")) == 9
    finally:
        for s in stores:
            s.close()


def test_the_official_cli_queries_all_answer(engine: QueryEngine, filled: Filled) -> None:
    inv = str(filled.ids["running"])
    big = (
        "SELECT inv.id, inv.target, inv.target_service_ty, inv.idempotency_key, inv.status, "
        "inv.created_at, inv.modified_at as state_modified_at, inv.pinned_deployment_id, "
        "inv.retry_count as num_retries, inv.last_failure as last_failure_message, "
        "inv.last_failure_related_entry_index as last_failure_entry_index, "
        "inv.last_failure_related_entry_name as last_failure_entry_name, "
        "inv.last_failure_related_entry_type as last_failure_entry_ty, "
        "inv.last_attempt_deployment_id, inv.last_attempt_server, inv.next_retry_at, "
        "inv.last_start_at, inv.invoked_by_id, inv.invoked_by_target, inv.trace_id, "
        "inv.completion_result, inv.completion_failure, dp.id IS NOT NULL as "
        "pinned_deployment_exists FROM sys_invocation inv LEFT JOIN sys_deployment dp ON "
        "dp.id = inv.pinned_deployment_id WHERE status != 'completed' AND inv.id in "
        f"('{inv}') ORDER BY inv.created_at DESC, inv.id"
    )
    queries = [
        "SELECT COUNT(1) FROM (SELECT\n            *\n        FROM sys_invocation inv\n"
        "        LIMIT 50000\n        )\n        WHERE status != 'completed'",
        "SELECT\n            id\n        FROM sys_invocation inv\n        WHERE status != "
        "'completed'\n        ORDER BY inv.created_at DESC, inv.id\n        LIMIT 100",
        big,
        f"SELECT id FROM sys_invocation inv WHERE inv.id = '{inv}' LIMIT 1",
        "SELECT sj.index, sj.entry_type, sj.completed, sj.invoked_id, sj.invoked_target, "
        "sj.sleep_wakeup_at, sj.name, sj.promise_name, sj.version, sj.entry_json, "
        f"sj.appended_at FROM sys_journal sj WHERE sj.id = '{inv}' ORDER BY index DESC LIMIT 100",
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'sys_journal' AND "
        "column_name IN ('promise_name')",
        f"SELECT id, target FROM sys_invocation_status WHERE id = '{inv}' AND status != "
        "'completed' LIMIT 500",
        "SELECT id, target FROM sys_invocation_status WHERE ((target = 'Greeter/greet' AND "
        "target_service_ty = 'service') OR (target LIKE 'Greeter/greet/%' AND "
        "target_service_ty != 'service')) AND status != 'completed' LIMIT 500",
        "SELECT target_service_name, target_handler_name, 'pending' as status, COUNT(1) as "
        "num_invocations, MIN(created_at) as oldest_at, FIRST_VALUE(id ORDER BY created_at "
        "ASC) as oldest_invocation FROM sys_invocation_status WHERE status == 'inboxed' AND "
        "target_service_name IN ('Counter') GROUP BY target_service_name, target_handler_name",
        "SELECT target_service_name, target_handler_name, status, COUNT(1) as num_invocations,"
        " MIN(created_at) as oldest_at FROM sys_invocation WHERE target_service_name IN "
        "('Greeter') GROUP BY target_service_name, target_handler_name, status "
        "ORDER BY target_handler_name",
        "SELECT target_service_name as service, target_handler_name as handler, COUNT(1) AS "
        "inv_count FROM sys_invocation_status WHERE pinned_deployment_id = 'dp_1' AND status "
        "!= 'completed' GROUP BY pinned_deployment_id, target_service_name, "
        "target_handler_name",
        "SELECT service_name, service_key, key, value FROM state WHERE service_name = "
        "'Counter' AND service_key = 'k1'",
    ]
    for q in queries:
        for as_json in (True, False):
            answer = engine.run(q, REGISTRY, as_json)
            assert answer.status == 200, (q, answer.body)
    (row,) = rows(engine, big, REGISTRY)
    assert row["status"] == "running" and row["pinned_deployment_exists"] is False


def test_columns_named_but_never_needed_still_exist(engine: QueryEngine, filled: Filled) -> None:
    # The optimizer needs no value of `id` under count(*); the query still names it.
    sql = (
        "SELECT count(*) AS n FROM (SELECT id FROM sys_invocation "
        "WHERE status = 'completed' LIMIT 10001)"
    )
    everything = rows(engine, "SELECT count(*) AS n FROM sys_invocation WHERE status = 'completed'")
    assert rows(engine, sql) == everything


def test_the_first_rows_of_an_order_come_from_an_index(tmp_path: Path) -> None:
    store = SqlitePartitionStore(tmp_path / "partition-0.db")
    fill(store, extra_completed=40)
    # Distinct creation times, with a tie at the cut: ten rows at the same instant.
    db = store._writer
    db.execute("UPDATE invocation SET created_at = created_at + 10 * rowid")
    tied = "created_at - 10 * (rowid - 20)"
    db.execute(f"UPDATE invocation SET created_at = {tied} WHERE rowid BETWEEN 20 AND 29")
    store.close()
    engine = QueryEngine([PartitionSource(tmp_path / "partition-0.db")], "1.7.12")
    every = rows(engine, "SELECT id, created_at FROM sys_invocation")
    newest_first = sorted(every, key=lambda r: (r["created_at"], r["id"]), reverse=True)
    oldest_first = sorted(every, key=lambda r: (r["created_at"], r["id"]))
    for sql, expected, most_read in [
        ("ORDER BY created_at DESC, id DESC LIMIT 5", newest_first[:5], 5),
        ("ORDER BY created_at, id LIMIT 25", oldest_first[:25], 29),  # 10 tied at the cut
        ("WHERE status = 'completed' ORDER BY created_at DESC LIMIT 3", None, 3),
    ]:
        query = f"SELECT id, created_at FROM sys_invocation {sql}"
        answer = engine.run(query, NO_REGISTRY, True)
        assert answer.status == 200, answer.body
        assert answer.rows_read <= most_read, (sql, answer.rows_read)
        got = json.loads(answer.body)["rows"]
        if expected is None:
            completed = rows(
                engine,
                "SELECT id, created_at FROM sys_invocation WHERE status = 'completed'",
            )
            expected = sorted(completed, key=lambda r: r["created_at"], reverse=True)[:3]
            assert [r["created_at"] for r in got] == [r["created_at"] for r in expected]
        else:
            assert got == expected, sql
