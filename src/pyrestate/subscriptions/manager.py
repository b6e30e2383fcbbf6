"""Runs a consumer for every subscription whose cluster is known, following the catalog:
a new subscription starts consuming once it is stored, a deleted one stops, a changed
cluster restarts the consumers reading from it."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from pyrestate.subscriptions.consumer import Partition, Sinks, SubscriptionConsumer
from pyrestate.subscriptions.model import KafkaCluster, Subscription

if TYPE_CHECKING:
    from pyrestate.telemetry.tracing import Tracer

log = logging.getLogger(__name__)


class Catalog(Protocol):
    def subscriptions(self) -> list[Subscription]: ...

    def cluster(self, name: str) -> KafkaCluster | None: ...


class SubscriptionManager:
    def __init__(
        self, catalog: Catalog, partition: Partition, sinks: Sinks, tracer: Tracer | None = None
    ) -> None:
        self._catalog = catalog
        self._partition = partition
        self._sinks = sinks
        self._tracer = tracer
        self._running: dict[str, tuple[SubscriptionConsumer, asyncio.Task[None]]] = {}
        self._stopping: set[asyncio.Task[None]] = set()  # cancelled, still winding down
        self._orphans: set[str] = set()  # subscriptions already reported without a cluster
        self._stopped = False

    def start(self) -> None:
        self.reconcile()

    def reconcile(self) -> None:
        """Start and stop consumers so that they match the catalog (call on every change)."""
        if self._stopped:
            return
        wanted: dict[str, tuple[Subscription, KafkaCluster]] = {}
        for sub in self._catalog.subscriptions():
            cluster = self._catalog.cluster(sub.cluster)
            if cluster is None:
                if sub.id not in self._orphans:
                    self._orphans.add(sub.id)
                    log.warning(
                        "subscription %s reads from Kafka cluster '%s', which is not "
                        "configured: it consumes nothing until the cluster is back",
                        sub.id,
                        sub.cluster,
                    )
                continue
            self._orphans.discard(sub.id)
            wanted[sub.id] = (sub, cluster)
        for sub_id, (consumer, task) in list(self._running.items()):
            if wanted.get(sub_id) != (consumer.sub, consumer.cluster):
                task.cancel()
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)
                del self._running[sub_id]
        for sub_id, (sub, cluster) in wanted.items():
            if sub_id not in self._running:
                consumer = SubscriptionConsumer(
                    sub, cluster, self._partition, self._sinks, self._tracer
                )
                task = asyncio.create_task(consumer.run(), name=f"subscription-{sub_id}")
                self._running[sub_id] = (consumer, task)
                log.info("subscription %s: consuming %s into %s", sub_id, sub.source, sub.sink)

    async def aclose(self) -> None:
        self._stopped = True
        tasks = [task for _, task in self._running.values()] + list(self._stopping)
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
