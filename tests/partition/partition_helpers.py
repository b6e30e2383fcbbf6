"""What tests of the partition writer and of its observers share: a store on disk, a
clock to set, and a stand-in for the invoker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyrestate.core.effects import Effect
from pyrestate.core.model import ServiceType, Target
from pyrestate.partition.processor import PartitionProcessor
from pyrestate.storage.sqlite import SqlitePartitionStore

GREET = Target("Greeter", "greet", None, ServiceType.SERVICE, None)


class Effects:
    """Stands in for the invoker: records what the partition released, in order."""

    def __init__(self) -> None:
        self.seen: list[Effect] = []

    def handle(self, effect: Effect) -> None:
        self.seen.append(effect)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture(name="store")
def store_fixture(tmp_path: Path) -> Iterator[SqlitePartitionStore]:
    """A partition store in the test's own folder (import this to have ``store``)."""
    s = SqlitePartitionStore(tmp_path / "p.db")
    yield s
    s.close()


async def settle(p: PartitionProcessor) -> None:
    """Until nothing waits to be applied and no batch is being committed (1 s at most)."""
    for _ in range(100):
        await asyncio.sleep(0.01)
        if not p._pending and not p._in_batch:
            await asyncio.sleep(0.02)
            return
