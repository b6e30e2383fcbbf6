"""Runs one SQL query over the partition stores with DataFusion (in a query worker).

The query is planned against empty tables with the official schemas; the scans of the
optimized plan say which columns, rows (simple predicates) and how many (LIMIT) each
table must give; only those are read from storage, registered as in-memory tables, and
the query is run on them. Memory is bounded by DataFusion's pool, the result by a size
limit, and the time by the worker's caller (which kills the worker at its deadline).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext, SQLOptions

from pyrestate.query.answer import ARROW_CONTENT_TYPE, json_rows
from pyrestate.query.pushdown import PlanTooDeep, TableRead, table_reads
from pyrestate.query.schema import SCHEMAS
from pyrestate.query.tables import (
    PartitionSource,
    QueryLimitError,
    RegistrySnapshot,
    Table,
    build_tables,
)

MAX_SQL_BYTES = 256 * 1024
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_SERIES_ROWS = 100_000_000
# generate_series/range with literal bounds: refused up front when they would make more
# rows than any answer may have (otherwise only the deadline would stop them).
_SERIES = re.compile(
    r"\b(?:generate_series|range)\s*\(\s*(-?\d+)\s*(?:,\s*(-?\d+)\s*)?(?:,\s*(-?\d+)\s*)?\)",
    re.IGNORECASE,
)


def _series_too_long(sql: str) -> bool:
    for m in _SERIES.finditer(sql):
        a, b, c = m.groups()
        start, stop = (0, int(a)) if b is None else (int(a), int(b))
        step = int(c) if c is not None else 1
        if step != 0 and (stop - start) // step > MAX_SERIES_ROWS:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Limits:
    memory_bytes: int = 512 * 1024 * 1024  # DataFusion's pool (sorts, joins, aggregates)
    result_bytes: int = 64 * 1024 * 1024  # the answer, as Arrow data
    result_rows: int = 1_000_000
    rows_read: int = 5_000_000  # rows taken from storage for one query
    seconds: float = 30.0
    batch_size: int = 8192


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    rows_read: int = 0  # from storage, for tests and benchmarks


def error_answer(status: int, message: str) -> Answer:
    return Answer(
        status, "application/json", json.dumps({"message": message}, separators=(",", ":")).encode()
    )


def _datafusion_error(e: Exception) -> Answer:
    """The official status and message for a DataFusion error (see the probe, item 9)."""
    text = str(e)
    prefix = "DataFusion error: "
    if text.startswith(prefix):
        text = text[len(prefix) :]
    message = f"Datafusion error: {text}"
    if text.startswith("Error during planning: table ") and text.endswith(" not found"):
        return error_answer(500, message)
    if text.startswith(("SQL error", "Error during planning", "Schema error")):
        return error_answer(400, message)
    return error_answer(500, message)


class QueryEngine:
    def __init__(
        self,
        sources: Sequence[PartitionSource],
        restate_version: str,
        limits: Limits = Limits(),
    ) -> None:
        self.sources = list(sources)
        self.limits = limits
        self.tables: dict[str, Table] = build_tables(restate_version)
        self._options = SQLOptions().with_allow_ddl(False).with_allow_dml(False)
        self._options = self._options.with_allow_statements(False)
        self._planner = self._context()
        for name, schema in SCHEMAS.items():
            self._planner.register_record_batches(name, [[_empty(schema)]])

    def _context(self) -> SessionContext:
        config = (
            SessionConfig()
            .with_information_schema(True)
            .with_default_catalog_and_schema("restate", "public")
            .with_batch_size(self.limits.batch_size)
            .with_target_partitions(2)
        )
        runtime = (
            RuntimeEnvBuilder()
            .with_greedy_memory_pool(self.limits.memory_bytes)
            .with_disk_manager_disabled()
        )
        return SessionContext(config, runtime)

    def run(self, sql: str, registry: RegistrySnapshot, as_json: bool) -> Answer:
        if len(sql.encode()) > MAX_SQL_BYTES:
            return error_answer(
                400, f"Datafusion error: the query is longer than {MAX_SQL_BYTES} bytes"
            )
        if _series_too_long(sql):
            return error_answer(
                400,
                f"Datafusion error: a series of more than {MAX_SERIES_ROWS} rows is refused",
            )
        started = time.monotonic()
        try:
            plan = self._planner.sql_with_options(sql, self._options).optimized_logical_plan()
            reads = table_reads(plan, set(self.tables))
        except PlanTooDeep as e:
            return error_answer(400, f"Datafusion error: {e}")
        except RecursionError:
            return error_answer(400, "Datafusion error: the query is nested too deeply")
        except Exception as e:
            return _datafusion_error(e)
        try:
            ctx, rows_read = self._load(reads, registry, sql)
            return self._execute(ctx, sql, as_json, started, rows_read)
        except QueryLimitError as e:
            return error_answer(500, f"Datafusion error: Resources exhausted: {e}")
        except RecursionError:
            return error_answer(400, "Datafusion error: the query is nested too deeply")
        except Exception as e:
            return _datafusion_error(e)

    def _load(
        self, reads: dict[str, TableRead], registry: RegistrySnapshot, sql: str
    ) -> tuple[SessionContext, int]:
        """A context whose tables hold what the query reads (and nothing for the rest)."""
        ctx = self._context()
        rows_read = 0
        words = {w.lower() for w in _WORD.findall(sql)}
        for name, table in self.tables.items():
            read = reads.get(name)
            if read is None:
                ctx.register_record_batches(name, [[_empty(table.schema)]])
                continue
            batches = []
            for batch in table.batches(self.sources, read, registry):
                rows_read += batch.num_rows
                if rows_read > self.limits.rows_read:
                    raise QueryLimitError(
                        f"the query reads more than {self.limits.rows_read} rows from storage; "
                        "narrow it with WHERE or LIMIT"
                    )
                batches.append(batch)
            # The query names columns the optimizer found it needs no values of (a subquery's
            # SELECT list under count(*)): they must exist, their values never matter.
            # information_schema must show the real columns: all of them then.
            wanted = (
                {c for c in table.schema.names if c in read.columns or c in words}
                if "information_schema" not in words
                else set(table.schema.names)
            )
            ctx.register_record_batches(name, [_shaped(table, wanted, batches)])
        return ctx, rows_read

    def _execute(
        self, ctx: SessionContext, sql: str, as_json: bool, started: float, rows_read: int
    ) -> Answer:
        df = ctx.sql_with_options(sql, self._options)
        stream = df.execute_stream()
        size = 0
        count = 0
        parts: list[bytes] = []
        sink = pa.BufferOutputStream()
        writer = None if as_json else pa.ipc.new_stream(sink, df.schema())
        for item in stream:
            batch = item.to_pyarrow()
            if time.monotonic() - started > self.limits.seconds:
                raise QueryLimitError(f"the query took longer than {self.limits.seconds:g}s")
            size += batch.nbytes
            count += batch.num_rows
            if count > self.limits.result_rows:
                raise QueryLimitError(
                    f"the result has more than {self.limits.result_rows} rows; "
                    "narrow it with WHERE or LIMIT"
                )
            if size > self.limits.result_bytes:
                raise QueryLimitError(
                    f"the result is larger than {self.limits.result_bytes // (1024 * 1024)} MiB; "
                    "narrow it with WHERE or LIMIT"
                )
            if writer is not None:
                writer.write_batch(batch)
            else:
                parts.extend(json_rows(batch))
        if writer is not None:
            writer.close()
            return Answer(200, ARROW_CONTENT_TYPE, sink.getvalue().to_pybytes(), rows_read)
        body = b'{"rows":[' + b",".join(parts) + b"]}"
        return Answer(200, "application/json", body, rows_read)


def _shaped(table: Table, wanted: set[str], batches: list[pa.RecordBatch]) -> list[pa.RecordBatch]:
    """The batches registered for a table: the ``wanted`` columns, NULL where not read."""
    schema = pa.schema([f for f in table.schema if f.name in wanted])
    if not batches:
        return [_empty(schema) if schema.names else _no_rows()]
    out = []
    for b in batches:
        if b.schema.names == schema.names:
            out.append(b)
            continue
        have = set(b.schema.names)
        arrays = [
            b.column(f.name) if f.name in have else pa.nulls(b.num_rows, f.type) for f in schema
        ]
        out.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
    return out


def _no_rows() -> pa.RecordBatch:
    return pa.RecordBatch.from_struct_array(pa.nulls(0, pa.struct([])))


def _empty(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)
