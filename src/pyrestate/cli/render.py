"""Output of the operator commands: rich tables for people, plain JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


def console() -> Console:
    # Made per command so that it writes to the current stdout (tests swap it). Piped
    # output gets no width limit, so ids are never folded and grep finds whole rows.
    return Console(width=None if sys.stdout.isatty() else 1000)


def cell(value: Any) -> Text:
    """A value as table text; Text keeps `[public]`-like strings from reading as markup."""
    if value is None:
        return Text("")
    if isinstance(value, bool):
        return Text("true" if value else "false")
    if isinstance(value, dict | list):
        return Text(json.dumps(value))
    return Text(str(value))


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    drop_empty: bool = False,
) -> Table:
    """A table of rows; without `columns`, every key in order of first appearance.

    Query rows omit null columns, so one row alone cannot name them all. `drop_empty`
    leaves out the columns no row has a value in.
    """
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    if drop_empty:
        columns = [c for c in columns if any(row.get(c) not in (None, "") for row in rows)]
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in columns:
        t.add_column(name.upper(), overflow="fold")
    for row in rows:
        t.add_row(*(cell(row.get(name)) for name in columns))
    return t


def details(pairs: Iterable[tuple[str, Any]], title: str | None = None) -> Table:
    """A two-column "label: value" block for one object; unset (None) values are left out."""
    t = Table(box=None, show_header=False, title=title, title_justify="left", pad_edge=False)
    t.add_column(style="bold")
    t.add_column(overflow="fold")
    for label, value in pairs:
        if value is not None:
            t.add_row(f"{label}:", cell(value))
    return t
