"""The Kafka clusters and subscriptions in force, and the rules for changing them.

Static clusters come from the server's settings; dynamic ones and all subscriptions are
created through the admin API and kept in a `SubscriptionStore`. A change is committed to
the store before the in-memory view changes and before listeners (the consumers) hear of
it, so nothing consumes for a subscription that a crash could forget.

The refusals carry the official server's status codes and texts (1.7.12), except that
options this server cannot honour and sources without a valid topic are refused here
instead of being accepted and failing forever in the consumer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from pyrestate.admin.errors import AdminError, schema_error
from pyrestate.admin.ids import new_subscription_id
from pyrestate.official_format import rust_debug_str
from pyrestate.subscriptions.kafka_options import KafkaOptionError, check_options
from pyrestate.subscriptions.model import (
    BROKER_PROPERTIES,
    STATIC_CREATED_AT,
    KafkaCluster,
    Subscription,
)
from pyrestate.subscriptions.store import SubscriptionStore

log = logging.getLogger("pyrestate.subscriptions")

_SOURCE_SCHEME = "kafka://"
_SINK_SCHEME = "service://"
_INVALID_URI = "META0009"
# Kafka's own rule for topic names.
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _invalid(kind: str, uri: str, reason: str) -> AdminError:
    return schema_error(400, f"invalid {kind} URI '{uri}': {reason}", _INVALID_URI)


def _scheme_error(kind: str, uri: str, scheme: str) -> AdminError:
    return _invalid(
        kind, uri, f"must have a scheme segment, with supported schemes: [{scheme[:-3]}]."
    )


def _normalized_sink(uri: str) -> str:
    """``service://Service/handler``, an empty path written ``/`` as the official stores
    it; AdminError 400 if the scheme is not ``service``."""
    if not uri.startswith(_SINK_SCHEME):
        raise _scheme_error("sink", uri, _SINK_SCHEME)
    return uri if "/" in uri.removeprefix(_SINK_SCHEME) else uri + "/"


def _check_source(uri: str) -> None:
    if not uri.startswith(_SOURCE_SCHEME):
        raise _scheme_error("source", uri, _SOURCE_SCHEME)
    topic = uri.removeprefix(_SOURCE_SCHEME).partition("/")[2]
    if not topic:
        raise _invalid("source", uri, "the topic is missing")
    if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise _invalid(
            "source",
            uri,
            f"'{topic}' is not a valid Kafka topic name "
            "(at most 249 of the characters a-z, A-Z, 0-9, '.', '_', '-')",
        )


def _check_properties(name: str, properties: Mapping[str, str]) -> None:
    if not any(p in properties for p in BROKER_PROPERTIES):
        raise AdminError(
            400,
            f"kafka cluster '{name}' properties must contain either 'bootstrap.servers' or "
            "'metadata.broker.list'",
        )
    _check_options(properties)


def _check_options(options: Mapping[str, str]) -> None:
    try:
        check_options(options)
    except KafkaOptionError as e:
        raise AdminError(400, str(e)) from None


def _static_conflict(name: str) -> AdminError:
    return AdminError(
        409,
        f"kafka cluster '{name}' cannot be updated, because it was defined in the restate "
        "configuration file. Update the configuration file directly, or remove the "
        "configuration file",
    )


def _cluster_not_found(name: str) -> AdminError:
    return AdminError(404, f"not found in the schema registry: kafka cluster named '{name}'")


def _with_defaults(
    sub_id: str, options: Mapping[str, str], cluster: KafkaCluster
) -> dict[str, str]:
    """The options a subscription is stored with: ``group.id`` always set, and
    ``client.id`` "restate" unless the cluster or the options name one."""
    out = dict(options)
    out.setdefault("group.id", cluster.properties.get("group.id", sub_id))
    if "client.id" not in cluster.properties:
        out.setdefault("client.id", "restate")
    return out


T = TypeVar("T")
Listener = Callable[[], None]
SinkExists = Callable[[str, str], bool]


class Catalog:
    def __init__(
        self,
        store: SubscriptionStore,
        static_clusters: Sequence[KafkaCluster],
        *,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        random80: Callable[[], int] = lambda: int.from_bytes(os.urandom(10), "big"),
    ) -> None:
        self._store = store
        self._clock_ms = clock_ms
        self._random80 = random80
        self._static = {
            c.name: replace(c, static=True, created_at=STATIC_CREATED_AT) for c in static_clusters
        }
        dynamic, subscriptions = store.load()
        self._dynamic = {c.name: c for c in dynamic}
        self._subscriptions = {s.id: s for s in subscriptions}
        self._listeners: list[Listener] = []
        # Changes are checked and applied one at a time on the latest view.
        self._lock = asyncio.Lock()

    # --- reading

    def clusters(self) -> list[KafkaCluster]:
        """Static clusters, then dynamic ones (oldest first). A static cluster hides a
        dynamic one of the same name, stored before the settings named it."""
        dynamic = [c for name, c in self._dynamic.items() if name not in self._static]
        return [*self._static.values(), *dynamic]

    def cluster(self, name: str) -> KafkaCluster | None:
        return self._static.get(name) or self._dynamic.get(name)

    def subscriptions(self) -> list[Subscription]:
        """Oldest first."""
        return list(self._subscriptions.values())

    def subscription(self, subscription_id: str) -> Subscription | None:
        return self._subscriptions.get(subscription_id)

    def on_change(self, listener: Listener) -> None:
        """Call ``listener`` (on the event loop) after every committed change."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            try:
                listener()
            except Exception:
                # The change is committed and answered as such; a listener's failure is its own.
                log.exception("a listener of Kafka subscription changes failed")

    async def _change(self, change: Coroutine[Any, Any, T]) -> T:
        """Run ``change`` (check, commit, update the view) alone, then tell listeners.

        Shielded: a cancelled request cannot leave a commit unseen by the view.
        """

        async def run() -> T:
            async with self._lock:
                result = await change
            self._changed()
            return result

        return await asyncio.shield(run())

    # --- clusters

    async def create_cluster(self, name: str, properties: Mapping[str, str]) -> KafkaCluster:
        return await self._change(self._create_cluster(name, properties))

    async def _create_cluster(self, name: str, properties: Mapping[str, str]) -> KafkaCluster:
        if name in self._static:
            raise AdminError(
                409,
                f"kafka cluster '{name}' conflicts with static configuration. Cluster "
                "names in schema registry cannot override statically configured clusters.",
            )
        if name in self._dynamic:
            raise AdminError(409, f"kafka cluster '{name}' already exists in schema registry")
        _check_properties(name, properties)
        cluster = KafkaCluster(name, dict(properties), self._clock_ms())
        await self._store.put_cluster(cluster)
        self._dynamic[name] = cluster
        return cluster

    async def update_cluster(self, name: str, properties: Mapping[str, str]) -> KafkaCluster:
        """Replace the properties of a dynamic cluster (all of them)."""
        return await self._change(self._update_cluster(name, properties))

    async def _update_cluster(self, name: str, properties: Mapping[str, str]) -> KafkaCluster:
        if name in self._static:
            raise _static_conflict(name)
        current = self._dynamic.get(name)
        if current is None:
            raise _cluster_not_found(name)
        _check_properties(name, properties)
        cluster = replace(current, properties=dict(properties))
        await self._store.put_cluster(cluster)
        self._dynamic[name] = cluster
        return cluster

    async def delete_cluster(self, name: str, *, force: bool = False) -> None:
        """Remove a dynamic cluster; with ``force`` its subscriptions stay, orphaned."""
        await self._change(self._delete_cluster(name, force))

    async def _delete_cluster(self, name: str, force: bool) -> None:
        if name in self._static:
            raise _static_conflict(name)
        if name not in self._dynamic:
            raise _cluster_not_found(name)
        using = next((s for s in self._subscriptions.values() if s.cluster == name), None)
        if using is not None and not force:
            raise AdminError(
                409,
                f"Removing the kafka cluster '{name}' leads to subscription '{using.id}' "
                "being orphan. Remove the subscription first, or use the 'force' flag.",
            )
        await self._store.delete_cluster(name)
        del self._dynamic[name]

    # --- subscriptions

    async def create_subscription(
        self, source: str, sink: str, options: Mapping[str, str], *, sink_exists: SinkExists
    ) -> Subscription:
        """A new subscription of ``sink`` to ``source``; ``sink_exists(service, handler)``
        says whether the sink's handler is registered."""
        return await self._change(self._create_subscription(source, sink, options, sink_exists))

    async def _create_subscription(
        self, source: str, sink: str, options: Mapping[str, str], sink_exists: SinkExists
    ) -> Subscription:
        _check_source(source)
        sink = _normalized_sink(sink)
        found = Subscription("", source, sink)  # for its reading of the URIs; id comes later
        cluster = self.cluster(found.cluster)
        if cluster is None:
            available = ", ".join(rust_debug_str(c.name) for c in self.clusters())
            raise AdminError(
                400, f"Kafka cluster '{found.cluster}' not found. Available clusters: [{available}]"
            )
        if not sink_exists(found.service, found.handler):
            raise _invalid("sink", sink, "cannot find service/handler specified in the sink URI.")
        now = self._clock_ms()
        sub_id = new_subscription_id(now, self._random80())
        subscription = replace(found, id=sub_id, options=_with_defaults(sub_id, options, cluster))
        _check_options(subscription.options)
        await self._store.put_subscription(subscription, now)
        self._subscriptions[sub_id] = subscription
        return subscription

    async def delete_subscription(self, subscription_id: str) -> None:
        await self._change(self._delete_subscription(subscription_id))

    async def _delete_subscription(self, subscription_id: str) -> None:
        if subscription_id not in self._subscriptions:
            raise AdminError(
                404, f"not found in the schema registry: subscription with id '{subscription_id}'"
            )
        await self._store.delete_subscription(subscription_id)
        del self._subscriptions[subscription_id]
