"""The subscription consumer against a real broker (Tansu) and a real partition writer:
what a record becomes, where a topic partition resumes, what a bad record blocks."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pyrestate.core.commands import Control, ControlAction, Retention
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import HandlerType, ServiceType, Status, Target
from pyrestate.ingress.app import Route
from pyrestate.partition.processor import PartitionProcessor
from pyrestate.storage.sqlite import SqlitePartitionStore
from pyrestate.subscriptions import consumer as consumer_module
from pyrestate.subscriptions.consumer import SubscriptionConsumer
from pyrestate.subscriptions.model import KafkaCluster, Subscription

E2E_DIR = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from tansu import Tansu, tansu_broker  # noqa: E402, F401  (the fixture "tansu")


class Sinks:
    """One virtual object ``Obj`` and one service ``Svc``, both with handler ``h``."""

    def route(self, service: str, handler: str) -> Route:
        keyed = service == "Obj"

        def target_for(key: str | None) -> Target:
            if keyed:
                kind = ServiceType.VIRTUAL_OBJECT
                return Target("Obj", handler, key, kind, HandlerType.EXCLUSIVE)
            return Target("Svc", handler, None, ServiceType.SERVICE, None)

        return Route(True, lambda empty: None, Retention(), target_for, lambda ct, body: None)

    def is_keyed(self, service: str) -> bool:
        return service == "Obj"


@pytest.fixture
async def partition(tmp_path: Path) -> AsyncIterator[PartitionProcessor]:
    store = SqlitePartitionStore(tmp_path / "p.db")
    p = PartitionProcessor(store)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
        store.close()


def _sub(sink: str, topic: str = "t") -> Subscription:
    options = {"group.id": "sub_1x", "auto.offset.reset": "earliest"}
    return Subscription("sub_1x", f"kafka://tansu/{topic}", sink, options)


def _invocations(p: PartitionProcessor) -> list[tuple[Target, dict[str, str], str | None]]:
    """Every invocation (target, headers, subscription id), by record partition and offset."""
    out = []
    for (raw,) in p.store._reader.execute("SELECT id FROM invocation").fetchall():
        st = p.store.invocation(InvocationId.from_bytes(raw))
        assert st is not None
        out.append((st.target, dict(st.headers), st.subscription_id))
    return sorted(out, key=lambda i: (int(i[1]["kafka.partition"]), int(i[1]["kafka.offset"])))


async def _until(check: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_record_becomes_an_invocation_with_the_official_headers(
    tansu: Tansu, partition: PartitionProcessor
) -> None:
    await tansu.create_topic("t", 1)
    await tansu.produce("t", [(b"a", b'{"i": 1}'), (None, b"x")])
    cluster = KafkaCluster("tansu", {"bootstrap.servers": tansu.bootstrap})
    consumer = SubscriptionConsumer(_sub("service://Obj/h"), cluster, partition, Sinks())
    task = asyncio.create_task(consumer.run())
    try:
        await _until(lambda: len(_invocations(partition)) == 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    (t1, h1, s1), (t2, h2, _) = _invocations(partition)
    assert (t1.key, t2.key) == ("a", ""), "no key: the object with the empty key"
    assert s1 == "sub_1x"
    assert list(h1) == [
        "kafka.offset",
        "kafka.topic",
        "kafka.partition",
        "kafka.timestamp",
        "restate.subscription.id",
        "kafka.key",
    ]
    assert (h1["kafka.offset"], h1["kafka.topic"], h1["kafka.partition"]) == ("0", "t", "0")
    assert h1["kafka.key"] == "YQ==" and h1["restate.subscription.id"] == "sub_1x"
    assert "kafka.key" not in h2 and h2["kafka.offset"] == "1"


async def test_a_restarted_consumer_resumes_after_what_was_accepted(
    tansu: Tansu, partition: PartitionProcessor
) -> None:
    await tansu.create_topic("t", 2)
    await tansu.produce("t", [(None, b"1"), (None, b"2"), (None, b"3")])
    cluster = KafkaCluster("tansu", {"bootstrap.servers": tansu.bootstrap})
    sub = _sub("service://Svc/h")
    for expected in (3, 5):
        consumer = SubscriptionConsumer(sub, cluster, partition, Sinks())
        task = asyncio.create_task(consumer.run())
        try:
            await _until(lambda n=expected: len(_invocations(partition)) == n)  # type: ignore[misc]
            await asyncio.sleep(1.0)  # nothing more comes
            assert len(_invocations(partition)) == expected
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await tansu.produce("t", [(None, b"4"), (None, b"5")])


async def test_a_key_that_is_not_utf8_stops_its_partition_only(
    tansu: Tansu, partition: PartitionProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    await tansu.create_topic("t", 2)
    producer = tansu.producer()
    await producer.start()
    try:
        await producer.send_and_wait("t", key=b"ok-1", value=b"1", partition=0)
        await producer.send_and_wait("t", key=b"\xff\xfe", value=b"2", partition=0)
        await producer.send_and_wait("t", key=b"ok-2", value=b"3", partition=0)
        await producer.send_and_wait("t", key=b"ok-3", value=b"4", partition=1)
    finally:
        await producer.stop()
    cluster = KafkaCluster("tansu", {"bootstrap.servers": tansu.bootstrap})
    consumer = SubscriptionConsumer(_sub("service://Obj/h"), cluster, partition, Sinks())
    task = asyncio.create_task(consumer.run())
    try:
        await _until(lambda: len(_invocations(partition)) == 2)
        await asyncio.sleep(1.0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    keys = sorted(t.key or "" for t, _, _ in _invocations(partition))
    assert keys == ["ok-1", "ok-3"], "partition 0 stops at the bad record, partition 1 goes on"
    assert "topic t partition 0 stops at offset 1: the Kafka record key must be valid UTF-8" in (
        caplog.text
    )
    statuses = {st.status for st in partition.machine.invocations.values()}
    assert statuses <= {Status.INVOKED, Status.INBOXED}


async def test_fetching_waits_while_the_handlers_are_behind(
    tansu: Tansu, partition: PartitionProcessor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "MAX_LIVE", 3)
    await tansu.create_topic("t", 1)
    await tansu.produce("t", [(f"k{i}".encode(), b"{}") for i in range(10)])
    cluster = KafkaCluster("tansu", {"bootstrap.servers": tansu.bootstrap})
    consumer = SubscriptionConsumer(_sub("service://Obj/h"), cluster, partition, Sinks())
    task = asyncio.create_task(consumer.run())
    try:
        await _until(lambda: len(_invocations(partition)) == 3)
        await asyncio.sleep(1.0)
        assert len(_invocations(partition)) == 3, "no invocation completed: nothing more read"
        assert partition.live_from("sub_1x") == 3
        # Two complete (killed by an operator): two more records are read, not more.
        for inv in list(partition.machine.invocations)[:2]:
            await partition.request(lambda t, i=inv: Control(i, ControlAction.KILL, t))
        await _until(lambda: len(_invocations(partition)) == 5)
        await asyncio.sleep(1.0)
        assert len(_invocations(partition)) == 5 and partition.live_from("sub_1x") == 3
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
