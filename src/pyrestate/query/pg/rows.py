"""Query answers as PostgreSQL sees them: Arrow columns as text-format values with type
OIDs, and the engine's error messages as SQLSTATE codes."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.ipc
import pyarrow.types as pt

from pyrestate.query.engine import Answer
from pyrestate.query.pg.wire import Field, data_row

Format = Callable[[Any], bytes]

_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_EPOCH = dt.datetime(1970, 1, 1)
TEXT = 25


@dataclass(frozen=True, slots=True)
class Result:
    fields: list[Field]
    rows: list[bytes]  # DataRow messages, ready to send


class QueryFailed(Exception):
    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


def _float(v: float) -> bytes:
    if math.isnan(v):
        return b"NaN"
    if math.isinf(v):
        return b"Infinity" if v > 0 else b"-Infinity"
    return repr(v).encode()  # shortest round-trip, as PostgreSQL 12+ prints floats


def _timestamp(unit: str, tz: bool) -> Format:
    per = _PER_SECOND[unit]

    def fmt(v: int) -> bytes:
        seconds, frac = divmod(v, per)
        micros = frac * 1_000_000 // per
        when = _EPOCH + dt.timedelta(seconds=seconds)
        text = when.strftime("%Y-%m-%d %H:%M:%S")  # ISO DateStyle
        if micros:
            text += f".{micros:06d}".rstrip("0")
        return (text + "+00" if tz else text).encode()

    return fmt


def _interval(unit: str) -> Format:
    per = _PER_SECOND[unit]

    def fmt(v: int) -> bytes:
        sign = "-" if v < 0 else ""
        seconds, frac = divmod(abs(v), per)
        days, seconds = divmod(seconds, 86_400)
        hours, seconds = divmod(seconds, 3_600)
        minutes, seconds = divmod(seconds, 60)
        text = f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"
        if frac:
            text += f".{frac * 1_000_000 // per:06d}".rstrip("0")
        if days:
            text = f"{sign}{days} day{'s' if days != 1 else ''} {text}"
        return text.encode()

    return fmt


def _month_day_nano(v: Any) -> bytes:
    parts = []
    if v.months:
        parts.append(f"{v.months} mon{'s' if abs(v.months) != 1 else ''}")
    if v.days:
        parts.append(f"{v.days} day{'s' if abs(v.days) != 1 else ''}")
    if v.nanoseconds or not parts:
        parts.append(_interval("ns")(v.nanoseconds).decode())
    return " ".join(parts).encode()


def _array_element(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "t" if v else "f"
    if isinstance(v, int | float):
        return str(v)
    text = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def _array(v: list[Any]) -> bytes:
    return ("{" + ",".join(_array_element(e) for e in v) + "}").encode()


def _json(v: Any) -> bytes:
    return json.dumps(v, default=str, separators=(",", ":")).encode()


def _pg_type(t: pa.DataType) -> tuple[int, int, Format]:
    """(type OID, fixed size or -1, text formatter of a Python value)."""
    if pt.is_boolean(t):
        return 16, 1, lambda v: b"t" if v else b"f"
    if t in (pa.int8(), pa.int16(), pa.uint8()):
        return 21, 2, lambda v: str(v).encode()
    if t in (pa.int32(), pa.uint16()):
        return 23, 4, lambda v: str(v).encode()
    if t in (pa.int64(), pa.uint32()):
        return 20, 8, lambda v: str(v).encode()
    if t == pa.uint64() or pt.is_decimal(t):
        return 1700, -1, lambda v: str(v).encode()  # numeric: uint64 overflows int8
    if t in (pa.float16(), pa.float32()):
        return 700, 4, _float
    if t == pa.float64():
        return 701, 8, _float
    if pt.is_string(t) or pt.is_large_string(t) or pt.is_string_view(t):
        return TEXT, -1, lambda v: v.encode()
    if pt.is_binary(t) or pt.is_large_binary(t) or pt.is_fixed_size_binary(t):
        return 17, -1, lambda v: b"\\x" + v.hex().encode()
    if pt.is_timestamp(t):
        return (1184 if t.tz else 1114), 8, _timestamp(t.unit, t.tz is not None)
    if pt.is_date(t):
        return 1082, 4, lambda v: v.isoformat().encode()
    if pt.is_duration(t):
        return 1186, 16, _interval(t.unit)
    if t == pa.month_day_nano_interval():
        return 1186, 16, _month_day_nano
    if pt.is_list(t) or pt.is_large_list(t):
        item = t.value_type
        if pt.is_integer(item):
            return 1016, -1, _array  # int8[]
        if pt.is_string(item) or pt.is_large_string(item):
            return 1009, -1, _array  # text[]
        return TEXT, -1, _array
    return TEXT, -1, _json


def _column(array: pa.ChunkedArray, fmt: Format) -> list[bytes | None]:
    t = array.type
    # Timestamps and durations as raw integers: exact, and no tz-database lookups.
    if pt.is_timestamp(t) or pt.is_duration(t):
        array = array.cast(pa.int64())
    return [None if v is None else fmt(v) for v in array.to_pylist()]


def to_result(table: pa.Table) -> Result:
    fields: list[Field] = []
    columns: list[list[bytes | None]] = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        oid, size, fmt = _pg_type(column.type)
        fields.append(Field(name, oid, size))
        columns.append(_column(column, fmt))
    rows = [data_row(values) for values in zip(*columns, strict=True)]
    if not columns:  # zip of nothing: keep the row count
        rows = [data_row(()) for _ in range(table.num_rows)]
    return Result(fields, rows)


def _sqlstate(status: int, message: str) -> str:
    text = message.removeprefix("Datafusion error: ")
    if text.startswith("SQL error: ParserError") or "syntax error" in text.lower():
        return "42601"
    if text.startswith("Error during planning: table ") and text.endswith(" not found"):
        return "42P01"
    if text.startswith("Schema error: No field named"):
        return "42703"
    if "Invalid function" in text:
        return "42883"
    if "This feature is not implemented" in text:
        return "0A000"
    if status == 503 or text.startswith("Resources exhausted"):
        return "53000"
    return "42000" if status == 400 else "XX000"


_TABLES_HINT = "The tables are listed by: SELECT table_name FROM information_schema.tables"


def answer_to_result(answer: Answer) -> Result:
    """Decode the engine's answer; raises ``QueryFailed`` for an error answer."""
    if answer.status == 200:
        return to_result(pyarrow.ipc.open_stream(answer.body).read_all())
    try:
        message = str(json.loads(answer.body)["message"])
    except (ValueError, KeyError, TypeError):
        message = answer.body.decode(errors="replace") or f"query failed ({answer.status})"
    code = _sqlstate(answer.status, message)
    raise QueryFailed(code, message, _TABLES_HINT if code == "42P01" else None)
