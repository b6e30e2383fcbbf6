"""Fixtures: a partition store filled through storage, and an engine over it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from query_fixtures import Filled, fill

from pyrestate.query.engine import QueryEngine
from pyrestate.query.tables import PartitionSource
from pyrestate.storage.sqlite import SqlitePartitionStore


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[Filled]:
    store = SqlitePartitionStore(tmp_path / "partition-0.db")
    ids = fill(store)
    yield Filled(store.path, ids)
    store.close()


@pytest.fixture
def engine(filled: Filled) -> QueryEngine:
    return QueryEngine([PartitionSource(filled.path)], "1.7.12")
