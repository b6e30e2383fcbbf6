"""Query results as the official admin API writes them: JSON rows or an Arrow IPC stream.

JSON follows arrow-rs' JSON writer, which the official server uses: NULL columns are left
out of a row, timestamps are RFC 3339 (milliseconds only when not whole seconds, ``Z``
when the type has a time zone), durations ISO 8601 (``PT86400S``), binary as lowercase
hex.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from typing import Any

import pyarrow as pa

ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"

_EPOCH = dt.datetime(1970, 1, 1)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def _fraction(frac: int, unit: str) -> str:
    """arrow-rs (chrono's AutoSi) shows 0, 3, 6 or 9 digits: the fewest that are exact."""
    if frac == 0:
        return ""
    nanos = frac * (1_000_000_000 // _PER_SECOND[unit])
    for digits in (3, 6, 9):
        step = 10 ** (9 - digits)
        if nanos % step == 0:
            return "." + str(nanos // step).rjust(digits, "0")
    return ""


def _timestamp(unit: str, tz: str | None) -> Callable[[int], str]:
    per = _PER_SECOND[unit]

    def fmt(v: int) -> str:
        seconds, frac = divmod(v, per)
        when = _EPOCH + dt.timedelta(seconds=seconds)
        text = when.strftime("%Y-%m-%dT%H:%M:%S") + _fraction(frac, unit)
        return text + "Z" if tz is not None else text

    return fmt


def _duration(unit: str) -> Callable[[int], str]:
    per = _PER_SECOND[unit]

    def fmt(v: int) -> str:
        sign = "-" if v < 0 else ""
        seconds, frac = divmod(abs(v), per)
        digits = _DIGITS[unit]
        if frac == 0:
            return f"{sign}PT{seconds}S"
        return f"{sign}PT{seconds}.{str(frac).rjust(digits, '0')}S"

    return fmt


def _formatter(t: pa.DataType) -> Callable[[Any], Any] | None:
    """How a (non-null) value of type ``t`` is shown; None: as Python gives it."""
    if pa.types.is_timestamp(t):
        fmt_ts = _timestamp(t.unit, t.tz)
        return lambda v: fmt_ts(_int_of(v, t))
    if pa.types.is_duration(t):
        fmt_d = _duration(t.unit)
        return lambda v: fmt_d(_int_of(v, t))
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return lambda v: v.hex()
    if pa.types.is_floating(t):
        return lambda v: v if math.isfinite(v) else None
    if pa.types.is_date(t) or pa.types.is_time(t):
        return lambda v: v.isoformat()
    if pa.types.is_decimal(t):
        return str
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = _formatter(t.value_type)
        if inner is None:
            return None
        return lambda v: [None if x is None else inner(x) for x in v]
    if pa.types.is_struct(t):
        inner_fields = [(f.name, _formatter(f.type)) for f in t]
        return lambda v: {
            name: (fmt(v[name]) if fmt is not None else v[name])
            for name, fmt in inner_fields
            if v.get(name) is not None
        }
    if pa.types.is_map(t):
        return lambda v: {str(k): x for k, x in v}
    return None


def _int_of(v: Any, t: pa.DataType) -> int:
    """A timestamp/duration value as an integer of its unit."""
    if isinstance(v, int):
        return v
    return int(pa.scalar(v, type=t).cast(pa.int64()).as_py())


def _column(array: pa.Array) -> list[Any]:
    t = array.type
    if pa.types.is_timestamp(t) or pa.types.is_duration(t):
        # As integers: fast, and not limited to what datetime can hold.
        ints = array.cast(pa.int64()).to_pylist()
        fmt = _timestamp(t.unit, t.tz) if pa.types.is_timestamp(t) else _duration(t.unit)
        return [None if v is None else fmt(v) for v in ints]
    values = array.to_pylist()
    fmt_any = _formatter(t)
    if fmt_any is None:
        return values
    return [None if v is None else fmt_any(v) for v in values]


def json_rows(batch: pa.RecordBatch) -> list[bytes]:
    """Each row of ``batch`` as a JSON object, NULL columns left out."""
    names = batch.schema.names
    columns = [_column(batch.column(i)) for i in range(batch.num_columns)]
    out = []
    for i in range(batch.num_rows):
        row = {}
        for name, values in zip(names, columns, strict=True):
            v = values[i]
            if v is not None:
                row[name] = v
        out.append(json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode())
    return out
