"""Just enough SQL lexing for the protocol: split statements, find keywords and ``$n``.

Quoted text and comments are masked first (same length, blanked), so a ``;`` or ``$1``
inside a string literal is never taken for a separator or a parameter.
"""

from __future__ import annotations

import itertools
import re
import struct

_NOT_CODE = re.compile(
    r"""(?<![A-Za-z0-9_])[eE]'(?:[^'\\]|\\.|'')*(?:'|\Z)  # E'..' with backslash escapes
      | '(?:[^']|'')*(?:'|\Z)                          # standard string
      | "(?:[^"]|"")*(?:"|\Z)                          # quoted identifier
      | --[^\n]*                                       # line comment
      | /\*.*?(?:\*/|\Z)                               # block comment
      | \$([A-Za-z_][A-Za-z0-9_]*|)\$.*?(?:\$\1\$|\Z)  # dollar-quoted string
    """,
    re.VERBOSE | re.DOTALL,
)
_PARAM = re.compile(r"(?<![A-Za-z0-9_$])\$(\d+)")
_WORDS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
# Parameter types whose text value may stand unquoted in SQL (when it is a plain number).
_NUMERIC_OIDS = frozenset({20, 21, 23, 26, 700, 701, 1700})


def mask(sql: str) -> str:
    return _NOT_CODE.sub(lambda m: " " * len(m.group()), sql)


def split_statements(sql: str) -> list[str]:
    """The statements of a simple Query, in order; empty ones (or only comments) dropped."""
    masked = mask(sql)
    bounds = [-1, *(m.start() for m in re.finditer(";", masked)), len(sql)]
    return [
        sql[a + 1 : b].strip() for a, b in itertools.pairwise(bounds) if masked[a + 1 : b].strip()
    ]


def is_empty(sql: str) -> bool:
    return not mask(sql).replace(";", " ").strip()


def words(sql: str, n: int = 3) -> list[str]:
    """The statement's first ``n`` keywords or names, upper-cased (comments skipped)."""
    return [m.group().upper() for m in _WORDS.finditer(mask(sql))][:n]


def max_param(sql: str) -> int:
    return max((int(m.group(1)) for m in _PARAM.finditer(mask(sql))), default=0)


# Binary-format parameters drivers send (psycopg: ints, floats, bools) and their decoding.
_BINARY: dict[int, struct.Struct] = {
    21: struct.Struct(">h"),
    23: struct.Struct(">i"),
    20: struct.Struct(">q"),
    700: struct.Struct(">f"),
    701: struct.Struct(">d"),
    16: struct.Struct(">?"),
}
_TEXT_OIDS = frozenset({0, 19, 25, 1042, 1043})  # unknown, name, text, bpchar, varchar


def binary_param(raw: bytes, oid: int) -> str | None:
    """The text of a binary-format parameter value, None when its type is not supported."""
    if oid in _TEXT_OIDS:
        return raw.decode()
    shape = _BINARY.get(oid)
    if shape is None or len(raw) != shape.size:
        return None
    (value,) = shape.unpack(raw)
    return ("true" if value else "false") if oid == 16 else repr(value)


def literal(value: str | None, oid: int) -> str:
    if value is None:
        return "NULL"
    if oid in _NUMERIC_OIDS and _NUMBER.fullmatch(value):
        return value
    if oid == 16:  # bool: PostgreSQL's accepted spellings
        truth = value.strip().lower()
        if truth in ("t", "true", "y", "yes", "on", "1"):
            return "TRUE"
        if truth in ("f", "false", "n", "no", "off", "0"):
            return "FALSE"
    return "'" + value.replace("'", "''") + "'"


def bind_params(sql: str, values: list[str | None], oids: list[int]) -> str:
    """``sql`` with each ``$n`` replaced by its value as a SQL literal."""
    masked = mask(sql)
    out: list[str] = []
    last = 0
    for m in _PARAM.finditer(masked):
        index = int(m.group(1)) - 1
        if not 0 <= index < len(values):
            continue  # $0: not a parameter; the engine will say so
        out.append(sql[last : m.start()])
        oid = oids[index] if index < len(oids) else 0
        out.append(literal(values[index], oid))
        last = m.end()
    out.append(sql[last:])
    return "".join(out)
