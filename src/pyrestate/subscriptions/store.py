"""Durable storage of Kafka clusters (the dynamic ones) and subscriptions.

They live in their own tables of ``metadata.db``, next to the registry. Every write is
one transaction with ``synchronous=FULL``, run off the event loop: once an async write
returns, the change survives a crash or power loss.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path

from pyrestate.admin.registry_store import connect_metadata
from pyrestate.subscriptions.model import KafkaCluster, Subscription

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS kafka_cluster (
        name TEXT PRIMARY KEY,
        properties TEXT NOT NULL,
        created_at INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS subscription (
        id TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        sink TEXT NOT NULL,
        options TEXT NOT NULL,
        created_at INTEGER NOT NULL
    )
    """,
)


def _json(value: Mapping[str, str]) -> str:
    return json.dumps(dict(value), separators=(",", ":"), ensure_ascii=False)


class SubscriptionStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # Writes run in worker threads; one at a time, in the order they were asked for.
        self._write_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        return connect_metadata(self.path, _SCHEMA)

    def load(self) -> tuple[list[KafkaCluster], list[Subscription]]:
        """Every stored cluster and subscription, oldest first."""
        conn = self._connect()
        try:
            clusters = [
                KafkaCluster(name, json.loads(properties), created_at)
                for name, properties, created_at in conn.execute(
                    "SELECT name, properties, created_at FROM kafka_cluster "
                    "ORDER BY created_at, rowid"
                )
            ]
            subscriptions = [
                Subscription(sub_id, source, sink, json.loads(options))
                for sub_id, source, sink, options in conn.execute(
                    "SELECT id, source, sink, options FROM subscription ORDER BY created_at, rowid"
                )
            ]
        finally:
            conn.close()
        return clusters, subscriptions

    def _write(self, sql: str, params: tuple[str | int, ...]) -> None:
        with self._write_lock:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute(sql, params)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            finally:
                conn.close()

    async def put_cluster(self, cluster: KafkaCluster) -> None:
        """Add or replace a cluster; returns once it is durable."""
        await asyncio.to_thread(
            self._write,
            # An update keeps the row, and so the place of the cluster in listings.
            "INSERT INTO kafka_cluster (name, properties, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET properties = excluded.properties, "
            "created_at = excluded.created_at",
            (cluster.name, _json(cluster.properties), cluster.created_at),
        )

    async def delete_cluster(self, name: str) -> None:
        """Remove a cluster; returns once it is durable."""
        await asyncio.to_thread(self._write, "DELETE FROM kafka_cluster WHERE name = ?", (name,))

    async def put_subscription(self, subscription: Subscription, created_at: int) -> None:
        """Add a subscription (ids are never reused); returns once it is durable."""
        await asyncio.to_thread(
            self._write,
            "INSERT INTO subscription (id, source, sink, options, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                subscription.id,
                subscription.source,
                subscription.sink,
                _json(subscription.options),
                created_at,
            ),
        )

    async def delete_subscription(self, subscription_id: str) -> None:
        """Remove a subscription; returns once it is durable."""
        await asyncio.to_thread(
            self._write, "DELETE FROM subscription WHERE id = ?", (subscription_id,)
        )
