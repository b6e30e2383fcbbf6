"""Table providers: the rows of each introspection table, read from partition stores.

Each SQLite-backed table is described column by column (an SQL expression over the
partition's tables and an optional conversion in Python) and by the predicates it can
translate to SQL. A read runs over every partition store given, with the pushed-down
predicates and limit, in chunks, and yields Arrow record batches of only the columns
asked for (for an aggregate that SQLite can do part of, stand-in rows: see grouped.py).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pyrestate.core.ids import IdError, InvocationId, partition_key_of
from pyrestate.official_format import DOC_CODES, ERROR_CODE_NAMES, OTHER_DOC_CODE
from pyrestate.query import grouped
from pyrestate.query.journal import EntryView, describe, entry_kind, entry_type_name
from pyrestate.query.literal import sql_literal
from pyrestate.query.pushdown import Atom, TableRead
from pyrestate.query.schema import SCHEMAS
from pyrestate.telemetry.trace_context import TraceRef

CHUNK_ROWS = 8192  # rows fetched from SQLite and turned into one record batch


class QueryLimitError(RuntimeError):
    """A query wanted more than a query may have (rows read, result size, time)."""


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """What the admin registry knows, for sys_service and sys_deployment."""

    services: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    restate_version: str = ""

    @property
    def protocol_versions(self) -> dict[str, int]:
        return {d["id"]: d["protocol_version"] for d in self.deployments}


class PartitionSource:
    """A read-only connection to one partition's SQLite file (opened on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def db(self) -> sqlite3.Connection | None:
        if self._db is None:
            if not self.path.exists():
                return None
            db = sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True)
            db.execute("PRAGMA query_only=1")
            db.execute("PRAGMA busy_timeout=5000")
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


# --- value conversions


def _id_text(raw: bytes) -> str:
    return str(InvocationId.from_bytes(raw))


def _id_pk(raw: bytes) -> int:
    return int.from_bytes(raw[:8], "big")


def _utf8(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return bytes(raw).decode()
    except UnicodeDecodeError:
        return None


def _key_text(raw: bytes) -> str:
    return bytes(raw).decode(errors="replace")


def _waiting(index: int) -> Callable[[str | None], list[int] | None]:
    def get(text: str | None) -> list[int] | None:
        if text is None:
            return None
        return [v for v in json.loads(text)[index] if isinstance(v, int)]

    return get


def _callers(text: str) -> list[Any] | None:
    if text == "[]":
        return None
    # [id, completion, life, kind]: a call's completion kind means "invoked by a service".
    first = json.loads(text)[0]
    return first if len(first) < 4 or first[3] == 0x800D else None


def _trace_id(trace: str | None, raw_id: bytes) -> str | None:
    ref = TraceRef.parse(trace)
    return None if ref is None else f"{ref.own_trace(InvocationId.from_bytes(raw_id)):032x}"


def _invoked_by(callers: str, subscription: str | None) -> str:
    if subscription is not None:
        return "subscription"
    return "service" if _callers(callers) is not None else "ingress"


def _invoked_by_id(text: str) -> str | None:
    caller = _callers(text)
    return caller[0] if caller is not None else None


@functools.lru_cache(maxsize=4096)
def _entry(entry_type: int, body: bytes, callee: str | None) -> EntryView:
    # Cached: a row asks for several columns of the same entry.
    return describe(entry_type, body, callee)


# --- predicates


Where = tuple[str, list[Any]]
Translate = Callable[[Atom], Where | None]


def _ms(value: Any) -> int | None:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1000)
    return None


def _plain(sql: str, kind: str) -> Translate:
    """``sql op ?`` for a column stored as it is shown (text, integer or epoch ms)."""

    def convert(v: Any) -> Any:
        if kind == "text":
            return v if isinstance(v, str) else None
        if kind == "blob":
            return v.encode() if isinstance(v, str) else None
        if kind == "ms":
            return _ms(v)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def translate(a: Atom) -> Where | None:
        values = [convert(v) for v in a.values]
        if any(v is None for v in values):
            return None
        if a.op in ("in", "not in"):
            marks = ", ".join("?" * len(values))
            return f"{sql} {a.op.upper()} ({marks})", values
        return f"{sql} {a.op} ?", values

    return translate


def _id_translate(sql: str) -> Translate:
    def translate(a: Atom) -> Where | None:
        if a.op not in ("=", "in", "!=", "not in"):
            return None
        raws = []
        for v in a.values:
            try:
                raws.append(InvocationId.parse(v).to_bytes())
            except (IdError, AttributeError, TypeError):
                continue  # never equal to a stored id
        positive = a.op in ("=", "in")
        if not raws:
            return ("0", []) if positive else None
        marks = ", ".join("?" * len(raws))
        return f"{sql} {'IN' if positive else 'NOT IN'} ({marks})", raws

    return translate


def _status_translate(shown: dict[str, tuple[str, ...]]) -> Translate:
    """Statuses as shown -> stored, always as those that are (``!=`` as the others), so
    that SQLite finds them by ranges of an index; literals inline, with the partial
    index's own term when completed ones are left out."""
    everything = [s for stored in shown.values() for s in stored]

    def translate(a: Atom) -> Where | None:
        if a.op not in ("=", "in", "!=", "not in"):
            return None
        named = [s for v in a.values if isinstance(v, str) for s in shown.get(v, ())]
        stored = named if a.op in ("=", "in") else [s for s in everything if s not in named]
        if not stored:
            return "0", []
        clause = f"status IN ({', '.join(sql_literal(s) for s in stored)})"
        if "completed" not in stored:
            clause += " AND status != 'completed'"
        return clause, []

    return translate


def _target_translate(a: Atom) -> Where | None:
    if a.op not in ("=", "in"):
        return None
    parts: list[str] = []
    params: list[Any] = []
    for v in a.values:
        if not isinstance(v, str) or "/" not in v:
            continue
        service, rest = v.split("/", 1)
        parts.append("(service = ? AND key IS NULL AND handler = ?)")
        params += [service, rest]
        if "/" in rest:
            key, handler = rest.rsplit("/", 1)
            parts.append("(service = ? AND key = ? AND handler = ?)")
            params += [service, key, handler]
    return ("(" + " OR ".join(parts) + ")", params) if parts else ("0", [])


# --- tables


@dataclass(frozen=True, slots=True)
class Col:
    sql: tuple[str, ...]  # expressions selected for this column
    post: Callable[..., Any] | None = None  # values of ``sql`` -> shown value
    # What storage groups by for this column (see grouped.py) when not ``sql``: the stored
    # column that ``sql`` is computed from, so that SQLite can follow an index's order.
    group: tuple[str, ...] | None = None


def _c(
    *sql: str, post: Callable[..., Any] | None = None, group: tuple[str, ...] | None = None
) -> Col:
    return Col(sql, post, group)


def _related(field: str, post: Callable[..., Any] | None = None) -> Col:
    """A field of the command an active invocation's last failure names (stored as JSON;
    rows written before it was JSON hold plain text, which shows as NULL)."""
    return _c(
        _when(
            f"{_ACTIVE_STATE} AND json_valid(last_failure_related)",
            f"json_extract(last_failure_related, '$.{field}')",
        ),
        post=post,
    )


def _entry_column(name: str) -> Col:
    return _c("type", "body", "callee", post=lambda t, b, c: getattr(_entry(t, bytes(b), c), name))


def _command_type(value: int | None) -> str | None:
    """The official name of a command type ("Run", "Call", ...)."""
    if value is None:
        return None
    kind = entry_kind(value)
    return kind[1] if kind is not None else None


NULL = _c("NULL")


class Table:
    name: str

    @property
    def schema(self) -> pa.Schema:
        return SCHEMAS[self.name]

    def batches(
        self, sources: Sequence[PartitionSource], read: TableRead, registry: RegistrySnapshot
    ) -> Iterator[pa.RecordBatch]:
        return iter(())


class EmptyTable(Table):
    def __init__(self, name: str) -> None:
        self.name = name


@dataclass
class SqliteTable(Table):
    name: str
    from_sql: str
    where_sql: str  # always applied (e.g. only inboxed invocations)
    columns: dict[str, Col]
    translate: dict[str, Translate]
    # Columns whose stored SQL value sorts as the shown one does, never NULL, indexed: an
    # ORDER BY ... LIMIT on them is answered from the first rows of that order.
    orderable: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = set(self.schema.names) - set(self.columns)
        assert not missing, f"{self.name}: no source for {missing}"

    def where(self, read: TableRead) -> tuple[str, list[Any], bool]:
        """The SQL condition, its parameters, and whether it is exactly the query's."""
        clauses: list[str] = []
        params: list[Any] = []
        exact = True
        for alternative in read.alternatives:
            terms: list[str] = []
            for atom in alternative:
                translate = self.translate.get(atom.column)
                found = translate(atom) if translate is not None else None
                if found is None:
                    exact = False
                else:
                    terms.append(f"({found[0]})")
                    params.extend(found[1])
            if not terms:
                clauses, params = [], []
                exact = exact and len(read.alternatives) == 1
                break
            clauses.append(" AND ".join(terms))
        text = self.where_sql
        if clauses:
            text = f"({text}) AND (" + " OR ".join(f"({c})" for c in clauses) + ")"
        return text, params, exact

    def batches(
        self, sources: Sequence[PartitionSource], read: TableRead, registry: RegistrySnapshot
    ) -> Iterator[pa.RecordBatch]:
        names = [f.name for f in self.schema if f.name in read.columns]
        where, params, exact = self.where(read)
        remaining = read.limit
        if exact and read.limit_if_exact is not None:
            remaining = read.limit_if_exact
        extra = _extra_posts(self.name, registry)
        by_group = None
        if read.grouping is not None and exact and names and read.limit is None:
            no_post = {n for n in names if self.columns[n].post is None and n not in extra}
            source_sql = f"{self.from_sql} WHERE {where}"
            by_group = grouped.plan(self.columns, names, read.grouping.keys, source_sql, no_post)
        if by_group is None and exact:
            where, params = self._first_of_order(read, where, params)
        for source in sources:
            db = source.db()
            if db is None:
                continue
            if by_group is not None:
                convert = functools.partial(self._batch, extra=extra)
                cursor = db.execute(by_group.sql, params)
                yield from grouped.batches(cursor, by_group, names, self.schema, convert)
                continue
            if remaining is not None and remaining <= 0:
                return
            limit = "" if remaining is None else f" LIMIT {int(remaining)}"
            if not names:
                # Only the number of rows matters (count(*)): let SQLite count them.
                sql = f"SELECT count(*) FROM (SELECT 1 FROM {self.from_sql} WHERE {where}{limit})"
                (n,) = db.execute(sql, params).fetchone()
                if remaining is not None:
                    remaining -= n
                yield from _empty_rows(n)
                continue
            exprs: list[str] = []
            for name in names:
                for e in self.columns[name].sql:
                    if e not in exprs:
                        exprs.append(e)
            cursor = db.execute(
                f"SELECT {', '.join(exprs)} FROM {self.from_sql} WHERE {where}{limit}", params
            )
            while True:
                rows = cursor.fetchmany(CHUNK_ROWS)
                if not rows:
                    break
                if remaining is not None:
                    remaining -= len(rows)
                yield self._batch(names, exprs, rows, extra)

    def _first_of_order(
        self, read: TableRead, where: str, params: list[Any]
    ) -> tuple[str, list[Any]]:
        """``where`` narrowed to the rows a sort with a fetch can keep: the first ``fetch``
        rows by its first key, and every row tied with the last of them (the other keys
        choose among those). Only for a first key in ``orderable``."""
        if read.order is None:
            return where, params
        keys, fetch = read.order
        column, ascending = keys[0]
        expr = self.orderable.get(column)
        if expr is None or fetch < 1:
            return where, params
        direction, cmp, unbounded = (
            ("ASC", "<=", 2**63 - 1) if ascending else ("DESC", ">=", -(2**63))
        )
        bound = (
            f"SELECT {expr} FROM {self.from_sql} WHERE {where} "
            f"ORDER BY {expr} {direction} LIMIT 1 OFFSET {fetch - 1}"
        )
        # Fewer rows than the fetch: no bound (the subquery is NULL).
        narrowed = f"({where}) AND {expr} {cmp} COALESCE(({bound}), {unbounded})"
        return narrowed, params * 2

    def _batch(
        self,
        names: list[str],
        exprs: list[str],
        rows: list[tuple[Any, ...]],
        extra: dict[str, Callable[..., Any]],
    ) -> pa.RecordBatch:
        by_expr = dict(zip(exprs, zip(*rows, strict=True), strict=True))
        arrays = []
        fields = []
        for name in names:
            col = self.columns[name]
            post = extra.get(name, col.post)
            field_ = self.schema.field(name)
            if post is None:
                values: Sequence[Any] = by_expr[col.sql[0]]
            elif len(col.sql) == 1:
                values = [None if v is None else post(v) for v in by_expr[col.sql[0]]]
            else:
                values = [post(*vs) for vs in zip(*(by_expr[e] for e in col.sql), strict=True)]
            if pa.types.is_boolean(field_.type):
                values = [None if v is None else bool(v) for v in values]
            arrays.append(pa.array(values, type=field_.type))
            fields.append(field_)
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def _empty_rows(n: int) -> Iterator[pa.RecordBatch]:
    # Rows without columns: what a scan projecting nothing (e.g. for count(*)) returns.
    while n > 0:
        size = min(n, 1 << 20)
        yield pa.RecordBatch.from_struct_array(pa.nulls(size, pa.struct([])))
        n -= size


def _extra_posts(table: str, registry: RegistrySnapshot) -> dict[str, Callable[..., Any]]:
    """Conversions that need the registry (the protocol version a deployment speaks)."""
    if table not in ("sys_invocation", "sys_invocation_status"):
        return {}
    versions = registry.protocol_versions
    return {"pinned_service_protocol_version": versions.get}


_ACTIVE_STATE = "status IN ('invoked', 'backing-off', 'paused')"
_CODE_NAME = (
    "CASE last_failure_code "
    + " ".join(f"WHEN {code} THEN ' {name}'" for code, name in ERROR_CODE_NAMES.items())
    + " ELSE '' END"
)


# The official's documentation code of an attempt's failure (DOC_CODES). Errors the SDK
# reported carry their related command as JSON ({} when it named none); the server's own
# (a connection refused, a bad answer) carry none and get no code here.
_DOC_CODE = (
    "CASE last_failure_code "
    + " ".join(f"WHEN {code} THEN '{doc}'" for code, doc in DOC_CODES.items())
    + f" ELSE CASE WHEN json_valid(last_failure_related) THEN '{OTHER_DOC_CODE}' END END"
)


def _when(condition: str, sql: str) -> str:
    return f"CASE WHEN {condition} THEN {sql} END"


def _invocation_columns(version: str) -> dict[str, Col]:
    failure = "'[' || output_failure_code || '] ' || output_failure_message"
    return {
        "partition_key": _c("id", post=_id_pk),
        "id": _c("id", post=_id_text),
        "vqueue_id": NULL,
        "completion_result": _c(
            _when(
                "status = 'completed'",
                "CASE WHEN output_failure_code IS NULL THEN 'success' ELSE 'failure' END",
            )
        ),
        "completion_failure": _c(
            _when("status = 'completed' AND output_failure_code IS NOT NULL", failure)
        ),
        "target": _c(
            "service || '/' || CASE WHEN key IS NULL THEN '' ELSE key || '/' END || handler"
        ),
        "target_service_name": _c("service"),
        "target_service_key": _c("key"),
        "target_handler_name": _c("handler"),
        "target_service_ty": _c("service_type"),
        "scope": NULL,
        "limit_key": NULL,
        "idempotency_key": _c("idempotency_key"),
        "invoked_by": _c("callers", "subscription_id", post=_invoked_by),
        "invoked_by_id": _c("callers", post=_invoked_by_id),
        "invoked_by_subscription_id": _c("subscription_id"),
        "invoked_by_service_name": NULL,
        "invoked_by_target": NULL,
        "restarted_from": NULL,
        "pinned_deployment_id": _c("deployment_id"),
        "pinned_service_protocol_version": _c("deployment_id"),
        "trace_id": _c("trace", "id", post=_trace_id),
        "journal_size": _c("journal_length"),
        "journal_commands_size": _c("command_count"),
        "created_at": _c("created_at"),
        "created_using_restate_version": _c(sql_literal(version)),
        "modified_at": _c("modified_at"),
        "inboxed_at": _c(_when("inbox_seq IS NOT NULL", "created_at")),
        "scheduled_at": _c(_when("execution_time IS NOT NULL", "created_at")),
        "scheduled_start_at": _c("execution_time"),
        "running_at": _c("running_at"),
        "completed_at": _c("completed_at"),
        "completion_retention": _c("completion_retention"),
        "journal_retention": _c("journal_retention"),
        "suspended_waiting_for_completions": _c(
            _when("status = 'suspended'", "waiting"), post=_waiting(0)
        ),
        "suspended_waiting_for_signals": _c(
            _when("status = 'suspended'", "waiting"), post=_waiting(1)
        ),
        "suspended_waiting_future_json": NULL,
        # What the official invoker reports while it holds the invocation.
        "in_flight": _c("status = 'invoked'"),
        "retry_count": _c(_when(_ACTIVE_STATE, "retry_count")),
        "last_start_at": _c(_when(_ACTIVE_STATE, "running_at")),
        "last_attempt_deployment_id": _c(_when(_ACTIVE_STATE, "deployment_id")),
        "last_attempt_server": NULL,
        "next_retry_at": _c(_when("status = 'backing-off'", "next_retry_at")),
        "last_failure": _c(
            _when(
                f"{_ACTIVE_STATE} AND last_failure_code IS NOT NULL",
                f"'[' || last_failure_code || {_CODE_NAME} || '] ' || last_failure_message",
            )
        ),
        "last_failure_error_code": _c(
            _when(f"{_ACTIVE_STATE} AND last_failure_code IS NOT NULL", _DOC_CODE)
        ),
        "last_failure_related_command_index": _related("index"),
        "last_failure_related_command_name": _related("name"),
        "last_failure_related_command_type": _related("type", post=_command_type),
        "last_failure_related_entry_index": NULL,
        "last_failure_related_entry_name": NULL,
        "last_failure_related_entry_type": NULL,
        "last_awaiting_on_future_json": NULL,
    }


# Status shown -> statuses stored by pyrestate (core.model.Status).
_VIEW_STATUS = {
    "pending": ("inboxed",),
    "scheduled": ("scheduled",),
    "running": ("invoked",),
    "backing-off": ("backing-off",),
    "suspended": ("suspended",),
    "paused": ("paused",),
    "completed": ("completed",),
}
_RAW_STATUS = {
    "inboxed": ("inboxed",),
    "scheduled": ("scheduled",),
    "invoked": ("invoked", "backing-off"),
    "suspended": ("suspended",),
    "paused": ("paused",),
    "completed": ("completed",),
}


def _invocation_translate(status: dict[str, tuple[str, ...]]) -> dict[str, Translate]:
    return {
        "id": _id_translate("id"),
        "status": _status_translate(status),
        "target": _target_translate,
        "target_service_name": _plain("service", "text"),
        "target_service_key": _plain("key", "text"),
        "target_handler_name": _plain("handler", "text"),
        "target_service_ty": _plain("service_type", "text"),
        "idempotency_key": _plain("idempotency_key", "text"),
        "pinned_deployment_id": _plain("deployment_id", "text"),
        "created_at": _plain("created_at", "ms"),
        "modified_at": _plain("modified_at", "ms"),
        "completed_at": _plain("completed_at", "ms"),
    }


# Newest (or oldest) first, as lists show invocations: epoch ms, indexed (invocation_created).
_INVOCATION_ORDER = {"created_at": "created_at"}


def _restrict(columns: dict[str, Col], names: list[str], **renamed: Col) -> dict[str, Col]:
    return {n: renamed.get(n, columns.get(n, NULL)) for n in names}


def build_tables(restate_version: str) -> dict[str, Table]:
    inv = _invocation_columns(restate_version)
    shown_status = (
        "CASE status WHEN 'inboxed' THEN 'pending' WHEN 'invoked' THEN 'running' ELSE status END"
    )
    raw_status = "CASE status WHEN 'backing-off' THEN 'invoked' ELSE status END"
    tables: list[Table] = [
        SqliteTable(
            "sys_invocation",
            "invocation",
            "1",
            _restrict(
                inv, SCHEMAS["sys_invocation"].names, status=_c(shown_status, group=("status",))
            ),
            _invocation_translate(_VIEW_STATUS),
            _INVOCATION_ORDER,
        ),
        SqliteTable(
            "sys_invocation_status",
            "invocation",
            "1",
            _restrict(
                inv,
                SCHEMAS["sys_invocation_status"].names,
                status=_c(raw_status, group=("status",)),
            ),
            _invocation_translate(_RAW_STATUS),
            _INVOCATION_ORDER,
        ),
        SqliteTable(
            "sys_invocation_state",
            "invocation",
            _ACTIVE_STATE,
            _restrict(inv, SCHEMAS["sys_invocation_state"].names),
            {"id": _id_translate("id")},
        ),
        SqliteTable(
            "sys_inbox",
            "invocation",
            "status = 'inboxed'",
            _restrict(
                inv,
                SCHEMAS["sys_inbox"].names,
                service_name=_c("service"),
                service_key=_c("key"),
                sequence_number=_c("inbox_seq"),
            ),
            {
                "id": _id_translate("id"),
                "service_name": _plain("service", "text"),
                "service_key": _plain("key", "text"),
            },
        ),
        SqliteTable(
            "sys_keyed_service_status",
            "invocation",
            "key IS NOT NULL AND handler_type IN ('exclusive', 'workflow') "
            "AND status IN ('invoked', 'suspended', 'backing-off', 'paused')",
            {
                "partition_key": _c("id", post=_id_pk),
                "service_name": _c("service"),
                "service_key": _c("key"),
                "invocation_id": _c("id", post=_id_text),
            },
            {
                "invocation_id": _id_translate("id"),
                "service_name": _plain("service", "text"),
                "service_key": _plain("key", "text"),
            },
        ),
        SqliteTable(
            "sys_journal",
            "journal",
            "1",
            {
                "partition_key": _c("id", post=_id_pk),
                "id": _c("id", post=_id_text),
                "index": _c("idx"),
                "entry_type": _c("type", post=entry_type_name),
                "name": _entry_column("name"),
                # The official leaves these NULL for journals of protocol 4 and later.
                "completed": NULL,
                "invoked_id": NULL,
                "invoked_target": NULL,
                "sleep_wakeup_at": NULL,
                "promise_name": NULL,
                "raw": _c("body"),
                "raw_length": _c("length(body)"),
                "version": _c("2"),
                "entry_json": _entry_column("entry_json"),
                "entry_lite_json": _entry_column("entry_lite_json"),
                "appended_at": _c("appended_at"),
            },
            {
                "id": _id_translate("id"),
                "index": _plain("idx", "int"),
                "appended_at": _plain("appended_at", "ms"),
            },
        ),
        SqliteTable(
            "state",
            "state",
            "1",
            {
                "partition_key": _c("key", post=partition_key_of),
                "scope": NULL,
                "service_name": _c("service"),
                "service_key": _c("key"),
                "key": _c("name", post=_key_text),
                "key_length": _c("length(name)"),
                "value_utf8": _c("value", post=_utf8),
                "value": _c("value"),
                "value_length": _c("length(value)"),
            },
            {
                "service_name": _plain("service", "text"),
                "service_key": _plain("key", "text"),
                "key": _plain("name", "blob"),
            },
        ),
        SqliteTable(
            "sys_promise",
            "promise",
            "1",
            {
                "partition_key": _c("key", post=partition_key_of),
                "scope": NULL,
                "service_name": _c("service"),
                "service_key": _c("key"),
                "key": _c("name"),
                "completed": _c("completed"),
                "completion_success_value": _c(
                    _when("completed AND failure_code IS NULL", "coalesce(value, x'')")
                ),
                "completion_success_value_utf8": _c(
                    _when("completed AND failure_code IS NULL", "coalesce(value, x'')"),
                    post=_utf8,
                ),
                "completion_failure": _c(
                    _when(
                        "failure_code IS NOT NULL",
                        "'[' || failure_code || '] ' || failure_message",
                    )
                ),
            },
            {
                "service_name": _plain("service", "text"),
                "service_key": _plain("key", "text"),
                "key": _plain("name", "text"),
            },
        ),
        RegistryTable("sys_service", lambda r: r.services),
        RegistryTable("sys_deployment", lambda r: r.deployments),
    ]
    by_name = {t.name: t for t in tables}
    for name in SCHEMAS:
        by_name.setdefault(name, EmptyTable(name))
    return by_name


class RegistryTable(Table):
    """Rows from the registry snapshot sent with the query (a handful, never paged)."""

    def __init__(self, name: str, rows: Callable[[RegistrySnapshot], list[dict[str, Any]]]):
        self.name = name
        self._rows = rows

    def batches(
        self, sources: Sequence[PartitionSource], read: TableRead, registry: RegistrySnapshot
    ) -> Iterator[pa.RecordBatch]:
        rows = self._rows(registry)
        schema = pa.schema([f for f in self.schema if f.name in read.columns])
        if not schema.names:
            yield from _empty_rows(len(rows))
            return
        yield pa.RecordBatch.from_pylist(
            [{n: r.get(n) for n in schema.names} for r in rows], schema=schema
        )
