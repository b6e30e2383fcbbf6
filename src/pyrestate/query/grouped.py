"""Aggregates that storage does part of: rows read in groups, handed on as stand-ins.

``SELECT status, count(*), min(created_at) FROM sys_invocation WHERE ... GROUP BY status``
would otherwise read every matching row out of SQLite, and a third of a million rows
take seconds through Python. When the plan shows an aggregate of only count, min and
max right above a scan and its filter, and storage applies that filter exactly, SQLite
groups the rows instead (by the grouping columns, or finer), and each group becomes
stand-in rows from which DataFusion, aggregating again, computes the same answer: as
many rows as the group has; the grouping columns' values in all of them; every other
column with its minimum in one row, its maximum in as many more as it has other
non-NULL values, and NULL in the rest. Arrow builds the stand-ins (run-end decoding),
not Python row by row. The filter, which DataFusion applies again, holds for them too:
each of its predicates tests one column, and each value a stand-in holds is one that
passed.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from pyrestate.query.tables import Col

GROUPS_PER_BATCH = 8192  # groups fetched from SQLite at a time

# SQLite reads an integer in GROUP BY as a result column's position; a constant groups
# nothing anyway, so constants are left out of GROUP BY.
_CONSTANT = re.compile(r"NULL|-?\d+|'(?:[^']|'')*'")

# Converts rows of the given SQL expressions into a batch of the given columns.
Convert = Callable[[list[str], list[str], list[tuple[Any, ...]]], pa.RecordBatch]


@dataclass(frozen=True, slots=True)
class GroupedRead:
    sql: str  # key expressions, count(*), then count, min and max of each other column
    keys: list[str]
    key_exprs: list[str]
    measures: list[str]


def plan(
    columns: dict[str, Col],
    names: Sequence[str],
    keys: Sequence[str],
    source: str,
    no_post: set[str],
) -> GroupedRead | None:
    """The grouped read of ``names`` grouped by ``keys`` from ``source`` (``FROM ...
    WHERE ...``), None unless every other column is plain SQL (its minimum and maximum
    in SQLite are those of the values shown: ``no_post`` names those whose shown value is
    the SQL value itself)."""
    key_names = [n for n in names if n in keys]
    measures = [n for n in names if n not in keys]
    if any(n not in no_post or len(columns[n].sql) != 1 for n in measures):
        return None
    key_exprs: list[str] = []
    group_by: list[str] = []
    for n in key_names:
        col = columns[n]
        key_exprs.extend(e for e in col.sql if e not in key_exprs)
        for e in col.group or col.sql:
            if e not in group_by and not _CONSTANT.fullmatch(e):
                group_by.append(e)
    parts = [*key_exprs, "count(*)"]
    for n in measures:
        (e,) = columns[n].sql
        parts += [f"count({e})", f"min({e})", f"max({e})"]
    sql = f"SELECT {', '.join(parts)} FROM {source}"
    if group_by:
        sql += f" GROUP BY {', '.join(group_by)}"
    return GroupedRead(sql, key_names, key_exprs, measures)


def stand_ins(
    read: GroupedRead,
    groups: list[tuple[Any, ...]],
    names: Sequence[str],
    schema: pa.Schema,
    convert: Convert,
) -> pa.RecordBatch:
    """The stand-in rows of these groups, columns in the order of ``names``."""
    k = len(read.key_exprs)
    counts = [g[k] for g in groups]
    arrays: dict[str, pa.Array] = {}
    if read.keys:
        keys = convert(read.keys, read.key_exprs, [g[:k] for g in groups])
        for n in read.keys:
            arrays[n] = _repeat(keys.column(n), counts)
    for i, n in enumerate(read.measures):
        at = k + 1 + 3 * i
        values: list[Any] = []
        lengths: list[int] = []
        for g, rows in zip(groups, counts, strict=True):
            non_null, low, high = g[at : at + 3]
            values += [low, high, None]
            lengths += [min(non_null, 1), max(non_null - 1, 0), rows - non_null]
        field = schema.field(n)
        if pa.types.is_boolean(field.type):
            values = [None if v is None else bool(v) for v in values]
        arrays[n] = _repeat(pa.array(values, type=field.type), lengths)
    fields = [schema.field(n) for n in names]
    return pa.RecordBatch.from_arrays([arrays[n] for n in names], schema=pa.schema(fields))


def _repeat(values: pa.Array, lengths: list[int]) -> pa.Array:
    """Each of ``values`` as many times as its length says."""
    kept = [i for i, n in enumerate(lengths) if n]
    if not kept:
        return pa.array([], type=values.type)
    ends = pa.array(list(itertools.accumulate(lengths[i] for i in kept)), pa.int64())
    runs = pa.RunEndEncodedArray.from_arrays(ends, values.take(pa.array(kept, pa.int64())))
    return pc.run_end_decode(runs)


def batches(
    cursor: Any, read: GroupedRead, names: Sequence[str], schema: pa.Schema, convert: Convert
) -> Iterator[pa.RecordBatch]:
    while groups := cursor.fetchmany(GROUPS_PER_BATCH):
        yield stand_ins(read, groups, names, schema, convert)
