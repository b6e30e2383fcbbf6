"""One subscription's Kafka consumer: records in, invocations out, exactly once.

Every record becomes an ``Invoke`` carrying (producer, offset) for its topic partition;
the partition machine drops a record whose offset is not above the last one it accepted
from that producer, and keeps that offset in the same commit as the invocation. So the
server's own store says where each topic partition resumes: the consumer seeks there
after any restart, without consumer-group membership (no rebalances to wait for). The
group's committed offsets follow, after the records are durably accepted, so that Kafka
tools show the progress.

Records of one topic partition are submitted in offset order, so the invocations of one
object key queue in its inbox in that order; a slow key does not hold others back (its
invocations wait durably in its inbox, not here). At most one fetched batch is in flight:
the next is fetched once the previous one is committed, and fetching pauses while the
subscription has MAX_LIVE invocations not completed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from pyrestate.core.commands import Invoke
from pyrestate.ingress.app import Route
from pyrestate.partition.processor import Answer, PartitionUnavailable
from pyrestate.subscriptions.kafka_options import consumer_arguments
from pyrestate.subscriptions.model import KafkaCluster, Subscription

if TYPE_CHECKING:
    from pyrestate.telemetry.tracing import Tracer

log = logging.getLogger(__name__)

MAX_BATCH = 1000  # records fetched and submitted at once
# Fetching pauses while this many of the subscription's invocations have not completed:
# Kafka keeps the backlog, not the server's memory (about 1.2 KiB per queued invocation).
MAX_LIVE = 20_000
LIVE_WAIT_S = 0.05
FETCH_WAIT_MS = 200
COMMIT_INTERVAL_S = 1.0  # how often the group's offsets follow what was accepted
TOPIC_WAIT_S = 1.0  # how often a missing topic is looked for
METADATA_INTERVAL_S = 30.0  # how often new partitions of the topic are looked for
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
BLOCKED_LOG_INTERVAL_S = 60.0


class Partition(Protocol):
    def accepted_seq(self, producer: str) -> int | None: ...

    def live_from(self, subscription_id: str) -> int: ...

    def request_soon(
        self, make: Callable[[int], Invoke], follow: bool = True
    ) -> asyncio.Future[Answer]: ...


class Sinks(Protocol):
    """The registry as the ingress sees it (LookupError: no such service or handler)."""

    def route(self, service: str, handler: str) -> Route: ...

    def is_keyed(self, service: str) -> bool: ...


class PoisonRecord(ValueError):
    """A record that can never become an invocation (its partition stops at it)."""


def producer_id(sub: Subscription, tp: TopicPartition) -> str:
    return f"{sub.id}/{sub.group_id}/{tp.topic}/{tp.partition}"


def record_headers(
    sub: Subscription, record: ConsumerRecord[bytes, bytes]
) -> list[tuple[str, str]]:
    """What the handler sees as request headers, as the official server passes them (the
    record's own Kafka headers are not passed)."""
    headers = [
        ("kafka.offset", str(record.offset)),
        ("kafka.topic", record.topic),
        ("kafka.partition", str(record.partition)),
    ]
    if record.timestamp is not None and record.timestamp >= 0:
        headers.append(("kafka.timestamp", str(record.timestamp)))
    headers.append(("restate.subscription.id", sub.id))
    if record.key is not None:
        headers.append(("kafka.key", base64.urlsafe_b64encode(record.key).decode()))
    return headers


class SubscriptionConsumer:
    def __init__(
        self,
        sub: Subscription,
        cluster: KafkaCluster,
        partition: Partition,
        sinks: Sinks,
        tracer: Tracer | None = None,
    ) -> None:
        self.sub = sub
        self.cluster = cluster
        self._partition = partition
        self._sinks = sinks
        self._tracer = tracer
        # Next offset to read per topic partition, kept across consumer restarts: what was
        # fetched but never accepted is read again.
        self._positions: dict[TopicPartition, int] = {}
        self._blocked: dict[TopicPartition, tuple[int, str]] = {}
        self._progressed = False  # since the consumer last (re)started

    async def run(self) -> None:
        """Consume until cancelled; a failure is logged and the consumer started again."""
        delay = RETRY_FIRST_S
        while True:
            self._progressed = False
            try:
                await self._consume()
            except PartitionUnavailable:
                return  # the server stops
            except Exception as e:  # the broker, its options, a removed sink: retried
                log.error(
                    "subscription %s (%s -> %s): consumer failed, restarting in %.0f s: %s",
                    self.sub.id,
                    self.sub.source,
                    self.sub.sink,
                    delay,
                    e or type(e).__name__,
                )
            delay = RETRY_FIRST_S if self._progressed else min(delay * 2, RETRY_MAX_S)
            await asyncio.sleep(delay)

    def _arguments(self) -> dict[str, Any]:
        args = consumer_arguments({**self.cluster.properties, **self.sub.options})
        args.pop("group_id", None)
        return args

    async def _consume(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.cluster.brokers(),
            group_id=self.sub.group_id,
            enable_auto_commit=False,
            **self._arguments(),
        )
        await consumer.start()
        loop = asyncio.get_running_loop()
        assigned: set[TopicPartition] = set()
        next_lookup = 0.0
        next_commit = loop.time() + COMMIT_INTERVAL_S
        next_blocked_log = 0.0
        committed: dict[TopicPartition, int] = {}
        try:
            while True:
                now = loop.time()
                if now >= next_lookup:
                    await self._assign(consumer, assigned)
                    next_lookup = now + (METADATA_INTERVAL_S if assigned else TOPIC_WAIT_S)
                if self._blocked and now >= next_blocked_log:
                    self._log_blocked()
                    next_blocked_log = now + BLOCKED_LOG_INTERVAL_S
                if now >= next_commit:
                    await self._commit_group(consumer, committed)
                    next_commit = loop.time() + COMMIT_INTERVAL_S
                if not assigned:
                    await asyncio.sleep(TOPIC_WAIT_S)
                    continue
                room = MAX_LIVE - self._partition.live_from(self.sub.id)
                if room <= 0:
                    await asyncio.sleep(LIVE_WAIT_S)  # the handlers are behind: wait
                    continue
                batch = await consumer.getmany(
                    timeout_ms=FETCH_WAIT_MS, max_records=min(MAX_BATCH, room)
                )
                if batch:
                    await self._ingest(consumer, batch)
                    self._progressed = True
        finally:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._commit_group(consumer, committed), 2.0)
            await consumer.stop()

    async def _assign(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        """Take every partition of the topic (new ones appear), each from where it resumes."""
        await consumer.topics()  # refreshes the metadata
        partitions = consumer.partitions_for_topic(self.sub.topic)
        if not partitions:
            return
        found = {TopicPartition(self.sub.topic, p) for p in partitions}
        if found <= assigned:
            return
        assigned |= found
        consumer.assign(sorted(assigned))
        for tp in assigned:
            accepted = self._partition.accepted_seq(producer_id(self.sub, tp))
            if accepted is not None:
                consumer.seek(tp, max(accepted + 1, self._positions.get(tp, 0)))
            elif tp in self._positions:
                consumer.seek(tp, self._positions[tp])
            # Else the group's committed offset, or auto.offset.reset without one.
            if tp in self._blocked:
                consumer.pause(tp)

    async def _ingest(
        self,
        consumer: AIOKafkaConsumer,
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
    ) -> None:
        """Submit every record in offset order; return once all are committed."""
        accepted: list[asyncio.Future[Answer]] = []
        ends: dict[TopicPartition, int] = {}
        for tp, records in batch.items():
            if tp in self._blocked:
                continue
            for record in records:
                try:
                    make = self._invoke_for(tp, record)
                except PoisonRecord as e:
                    self._blocked[tp] = (record.offset, str(e))
                    consumer.pause(tp)
                    ends[tp] = record.offset
                    self._log_blocked()
                    break
                accepted.append(self._partition.request_soon(make, follow=False))
                ends[tp] = record.offset + 1
        try:
            await asyncio.gather(*accepted)
        finally:
            for fut in accepted:  # a failed one must not leave the others unobserved
                if fut.done() and not fut.cancelled():
                    fut.exception()
        self._positions.update(ends)

    def _invoke_for(
        self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]
    ) -> Callable[[int], Invoke]:
        sub = self.sub
        route = self._sinks.route(sub.service, sub.handler)  # LookupError: sink removed
        key = None
        if self._sinks.is_keyed(sub.service):
            try:
                key = (record.key or b"").decode()
            except UnicodeDecodeError as e:
                raise PoisonRecord(f"the Kafka record key must be valid UTF-8: {e}") from None
        target = route.target_for(key)
        inv_id = target.new_invocation_id(os.urandom(24))
        headers = tuple(record_headers(sub, record))
        value = record.value or b""
        dedup = (producer_id(sub, tp), record.offset)
        trace = None
        if self._tracer is not None:
            trace = self._tracer.kafka_ingress(
                inv_id, target, sub.group_id, tp.topic, tp.partition, record.offset
            )

        def make(token: int) -> Invoke:
            return Invoke(
                invocation_id=inv_id,
                target=target,
                input=value,
                headers=headers,
                reply=token,
                retention=route.retention,
                subscription_id=sub.id,
                dedup=dedup,
                trace=trace,
            )

        return make

    async def _commit_group(
        self, consumer: AIOKafkaConsumer, committed: dict[TopicPartition, int]
    ) -> None:
        """Let the group's offsets follow what is durably accepted (for Kafka's tools; the
        server resumes from its own record). Best effort: a refusal is logged."""
        todo = {tp: o for tp, o in self._positions.items() if committed.get(tp) != o}
        if not todo:
            return
        try:
            await consumer.commit(todo)
        except Exception as e:
            log.warning(
                "subscription %s: cannot commit offsets to group %s: %s",
                self.sub.id,
                self.sub.group_id,
                e or type(e).__name__,
            )
            return
        committed.update(todo)

    def _log_blocked(self) -> None:
        for tp, (offset, reason) in self._blocked.items():
            log.error(
                "subscription %s: topic %s partition %d stops at offset %d: %s",
                self.sub.id,
                tp.topic,
                tp.partition,
                offset,
                reason,
            )
