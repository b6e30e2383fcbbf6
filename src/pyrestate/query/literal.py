"""SQL text of a value, for queries assembled from user input (CLI, UI, test harness)."""

from __future__ import annotations


def sql_literal(value: str) -> str:
    """A SQL string literal; doubling quotes is the only escape SQL strings have."""
    return "'" + value.replace("'", "''") + "'"
