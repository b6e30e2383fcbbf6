"""What a query reads from each table: columns, simple predicates, a row limit, groups.

The query is planned against empty tables with the official schemas; the optimized
logical plan then tells, for every scan of a table, which columns it reads, which filter
sits directly on top of it, whether a LIMIT reached it and whether it feeds an aggregate
directly. Only conjunctions of simple comparisons between a column and literals are
kept: they narrow what storage returns, and DataFusion applies the whole query again to
those rows, so a predicate left out only costs reading more rows, never a wrong answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from datafusion import Expr, LogicalPlan

_OPS = {"=", "!=", "<", "<=", ">", ">="}
_FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True, slots=True)
class Atom:
    """``column op value`` (op in =, !=, <, <=, >, >=) or ``column [NOT] IN values``."""

    column: str
    op: str  # also "in", "not in"
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Grouping:
    """An aggregate right above a scan (and its filter) that storage can do part of:
    GROUP BY ``keys`` (columns), computing only count, min and max of columns."""

    keys: tuple[str, ...]


# An ORDER BY with a fetch (a LIMIT over a sort): (column, ascending) keys, the fetch.
Order = tuple[tuple[tuple[str, bool], ...], int]


@dataclass(slots=True)
class Scan:
    columns: list[str]
    atoms: list[Atom]
    limit: int | None
    # Whether every predicate of the filter on this scan became an atom.
    complete: bool = True
    # A LIMIT right above the filter on this scan: it holds for storage too if every
    # predicate of the filter is translated exactly.
    limit_if_exact: int | None = None
    grouping: Grouping | None = None
    # A sort with a fetch above the scan (and its filter), same proviso as limit_if_exact.
    order: Order | None = None


@dataclass(slots=True)
class TableRead:
    """Every scan of one table merged: the union of what they need."""

    columns: set[str] = field(default_factory=set)
    # A disjunction of conjunctions; one empty conjunction means every row.
    alternatives: list[list[Atom]] = field(default_factory=list)
    limit: int | None = None
    limit_if_exact: int | None = None
    # The only scan feeds an aggregate that storage may do part of, provided the atoms
    # are the whole filter and are translated exactly.
    grouping: Grouping | None = None
    # The only scan's rows are sorted and cut: the first rows of that order are enough,
    # provided the atoms are the whole filter and are translated exactly.
    order: Order | None = None


class PlanTooDeep(ValueError):
    pass


MAX_DEPTH = 500  # plan and expression nesting beyond this is refused, not recursed into


def table_reads(plan: LogicalPlan, known: set[str]) -> dict[str, TableRead]:
    """The reads of the tables in ``known`` that ``plan`` scans."""
    scans: dict[str, list[Scan]] = {}
    _walk(plan, _Above(), known, scans, 0)
    reads: dict[str, TableRead] = {}
    for name, found in scans.items():
        read = TableRead()
        for s in found:
            read.columns.update(s.columns)
            read.alternatives.append(s.atoms)
        if len(found) == 1:
            read.limit_if_exact = found[0].limit_if_exact
            read.grouping = found[0].grouping
            read.order = found[0].order
            if not found[0].atoms:
                read.limit = found[0].limit
        if any(not alt for alt in read.alternatives):
            read.alternatives = [[]]
        reads[name] = read
    return reads


def _table_of(scan: Any, known: set[str]) -> str | None:
    catalog, schema, table = scan.fqn()
    if catalog not in (None, "restate") or schema not in (None, "public"):
        return None
    return table if table in known else None


@dataclass(frozen=True, slots=True)
class _Above:
    """What the nodes above hand down to a scan."""

    filter: Expr | None = None  # the predicate of a filter right above the scan
    limit: int | None = None  # a LIMIT that reaches down to that filter
    grouping: Grouping | None = None  # an aggregate right above that filter or the scan
    order: Order | None = None  # a sort with a fetch, reaching down like a limit


def _walk(
    plan: LogicalPlan, above: _Above, known: set[str], scans: dict[str, list[Scan]], depth: int
) -> None:
    if depth > MAX_DEPTH:
        raise PlanTooDeep("the query is nested too deeply")
    node = plan.to_variant()
    kind = type(node).__name__
    if kind == "TableScan":
        name = _table_of(node, known)
        if name is not None:
            scans.setdefault(name, []).append(_scan(node, above))
        return
    predicate = node.predicate() if kind == "Filter" else None
    # A limit passes down through row-preserving nodes to a filter right above a scan.
    limit: int | None = None
    if kind == "Limit" and node.fetch() is not None:
        limit = _limit_value(node)
    elif kind in ("Projection", "SubqueryAlias", "Filter"):
        limit = above.limit
    grouping = _grouping(node) if kind == "Aggregate" else None
    # A sort with a fetch passes down through filters and projections of plain columns.
    order: Order | None = None
    if kind == "Sort":
        order = _order(node)
    elif kind == "Filter" or (kind == "Projection" and _only_columns(node)):
        order = above.order
    for child in plan.inputs():
        child_kind = type(child.to_variant()).__name__
        # A filter counts only for the scan right below it (not across a limit, a join...).
        below_scan = child_kind == "TableScan"
        # An aggregate reaches a scan right below it, or below its one filter, through a
        # projection that only drops columns.
        if kind == "Aggregate" and child_kind in ("TableScan", "Filter", "Projection"):
            child_grouping = grouping
        elif kind == "Projection" and child_kind in ("TableScan", "Filter"):
            child_grouping = above.grouping if _only_columns(node) else None
        else:
            child_grouping = above.grouping if kind == "Filter" and below_scan else None
        below = _Above(
            predicate if below_scan else None,
            limit if kind != "Filter" or below_scan else None,
            child_grouping,
            order if kind != "Filter" or below_scan else None,
        )
        _walk(child, below, known, scans, depth + 1)


def _only_columns(projection: Any) -> bool:
    return all(_column(e) is not None for e in projection.projections())


def _scan(node: Any, above: _Above) -> Scan:
    atoms: list[Atom] = []
    complete = True
    for e in [*node.filters(), *([above.filter] if above.filter is not None else [])]:
        for c in _conjuncts(e):
            atom = _atom(c)
            if atom is None:
                complete = False
            else:
                atoms.append(atom)
    columns = [c for _, c in node.projection()]
    return Scan(
        columns,
        atoms,
        node.fetch(),
        complete,
        above.limit if above.filter is not None and complete else None,
        above.grouping if complete else None,
        above.order if complete else None,
    )


def _order(sort: Any) -> Order | None:
    """A sort's keys and fetch, None unless it has a fetch and sorts by columns."""
    fetch = sort.get_fetch_val()
    if fetch is None:
        return None
    keys = []
    for e in sort.sort_exprs():
        column = _column(e.expr())
        if column is None:
            return None
        keys.append((column, bool(e.ascending())))
    return tuple(keys), int(fetch)


# Aggregate functions storage computes by group (with the number of rows of each group,
# that is all DataFusion needs to compute them again over stand-in rows).
_BY_GROUP = ("count", "min", "max")


def _grouping(node: Any) -> Grouping | None:
    """The aggregate as a Grouping, None unless it groups by columns and computes only
    count, min and max of columns (count also of a literal: every row)."""
    keys = []
    for g in node.group_by_exprs():
        column = _column(g)
        if column is None:
            return None
        keys.append(column)
    for e in node.aggregate_exprs():
        v = _variant(e)
        if type(v).__name__ != "AggregateFunction" or v.is_distinct():
            return None
        name, args = v.aggregate_type(), v.args()
        if name not in _BY_GROUP or len(args) != 1:
            return None
        # A FILTER (WHERE ...) or ORDER BY clause shows only in the name.
        if e.canonical_name() != f"{name}({args[0].canonical_name()})":
            return None
        if _column(args[0]) is None and not (name == "count" and _literal(args[0])[0]):
            return None
    return Grouping(tuple(keys))


def _limit_value(node: Any) -> int | None:
    try:
        fetch = node.fetch().python_value()
        skip = node.skip().python_value() if node.skip() is not None else 0
        if isinstance(fetch, pa.Scalar):
            fetch = fetch.as_py()
        if isinstance(skip, pa.Scalar):
            skip = skip.as_py()
        return int(fetch) + int(skip or 0)
    except Exception:  # a limit that is not a plain number: not passed down
        return None


def _conjuncts(e: Expr, depth: int = 0) -> list[Expr]:
    if depth > MAX_DEPTH:
        raise PlanTooDeep("the query is nested too deeply")
    v = _variant(e)
    if type(v).__name__ == "BinaryExpr" and v.op().upper() == "AND":
        return _conjuncts(v.left(), depth + 1) + _conjuncts(v.right(), depth + 1)
    return [e]


def _variant(e: Expr) -> Any:
    """The expression's node, None for those the bindings cannot show (scalar functions...)."""
    try:
        return e.to_variant()
    except Exception:
        return None


def _column(e: Expr) -> str | None:
    v = _variant(e)
    return v.name() if type(v).__name__ == "Column" else None


def _literal(e: Expr) -> tuple[bool, Any]:
    v = _variant(e)
    if type(v).__name__ != "Literal":
        return False, None
    try:
        value = e.python_value()
        if isinstance(value, pa.Scalar):
            value = value.as_py()
    except Exception:  # values Python cannot hold (e.g. out-of-range timestamps)
        return False, None
    return value is not None, value


def _atom(e: Expr) -> Atom | None:
    v = _variant(e)
    kind = type(v).__name__
    if kind == "BinaryExpr":
        op = v.op().upper()
        if op == "OR":
            return _or_of_equalities(e)
        if op not in _OPS:
            return None
        left, right = v.left(), v.right()
        col, (ok, value) = _column(left), _literal(right)
        if col is None:
            col, (ok, value) = _column(right), _literal(left)
            op = _FLIP[op]
        if col is None or not ok:
            return None
        return Atom(col, op, (value,))
    if kind == "InList":
        col = _column(v.expr())
        values = [_literal(x) for x in v.list()]
        if col is None or not values or not all(ok for ok, _ in values):
            return None
        return Atom(col, "not in" if v.negated() else "in", tuple(x for _, x in values))
    return None


def _or_of_equalities(e: Expr) -> Atom | None:
    """``c = a OR c = b OR ...`` (how the optimizer writes a short IN list) as ``c IN``."""
    column: str | None = None
    values: list[Any] = []
    stack = [e]
    while stack:
        if len(stack) + len(values) > 10_000:
            return None
        item = stack.pop()
        v = _variant(item)
        if type(v).__name__ != "BinaryExpr":
            return None
        op = v.op().upper()
        if op == "OR":
            stack.extend((v.left(), v.right()))
            continue
        atom = _atom(item)
        if atom is None or atom.op not in ("=", "in"):
            return None
        if column is not None and atom.column != column:
            return None
        column = atom.column
        values.extend(atom.values)
    return Atom(column, "in", tuple(values)) if column is not None else None
