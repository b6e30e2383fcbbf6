"""The catalog of Kafka clusters and subscriptions: its rules (the official server's
answers, docs/official-1.7.12-probe-kafka.md), and that what it accepted is durable
before anyone hears of it."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pyrestate.admin.errors import AdminError
from pyrestate.admin.ids import subscription_id_error
from pyrestate.subscriptions.catalog import Catalog
from pyrestate.subscriptions.model import KafkaCluster, Subscription
from pyrestate.subscriptions.store import SubscriptionStore

TANSU = KafkaCluster(
    "tansu",
    {"metadata.broker.list": "PLAINTEXT://127.0.0.1:19092", "client.id": "probe-client"},
    static=True,
)
BROKERS = {"bootstrap.servers": "127.0.0.1:19092"}
SINKS = {("Counter", "add"), ("Svc", "handle"), ("Wf", "run")}


def sink_exists(service: str, handler: str) -> bool:
    return (service, handler) in SINKS


def catalog(path: Path, *static: KafkaCluster, **kw: Any) -> Catalog:
    return Catalog(SubscriptionStore(path), static, **kw)


async def refused(status: int, message: str, change: Any) -> AdminError:
    with pytest.raises(AdminError) as caught:
        await change
    assert (caught.value.status, caught.value.message) == (status, message)
    return caught.value


async def test_changes_survive_a_new_catalog_on_the_same_file(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    clock = iter(range(1_795_000_000_000, 1_795_000_001_000))
    first = catalog(db, TANSU, clock_ms=lambda: next(clock))
    dyn = await first.create_cluster("dyn", BROKERS)
    sec = await first.create_cluster("sec", {**BROKERS, "sasl.password": "hunter2"})
    await first.create_cluster("gone", BROKERS)
    subs = [
        await first.create_subscription(
            f"kafka://{c}/t{i}", "service://Counter/add", {}, sink_exists=sink_exists
        )
        for i, c in enumerate(["tansu", "dyn", "dyn"])
    ]
    await first.update_cluster("dyn", {**BROKERS, "client.id": "patched"})
    await first.delete_cluster("gone")
    await first.delete_subscription(subs[2].id)

    again = catalog(db, TANSU)
    # The creation time is kept on update; secrets are stored as given (shown redacted).
    assert again.cluster("dyn") == KafkaCluster(
        "dyn", {**BROKERS, "client.id": "patched"}, dyn.created_at
    )
    assert dyn.created_at == 1_795_000_000_000
    assert again.cluster("sec") == sec and sec.properties["sasl.password"] == "hunter2"
    assert again.cluster("gone") is None
    assert [c.name for c in again.clusters()] == ["tansu", "dyn", "sec"]
    assert again.subscriptions() == subs[:2]
    assert again.subscription(subs[0].id) == subs[0]
    assert again.subscription(subs[2].id) is None


async def test_listeners_hear_of_a_change_only_once_it_is_committed(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    cat = catalog(db, TANSU)
    seen: list[tuple[list[str], list[str]]] = []

    def listener() -> None:
        # What a fresh reader of the file finds, at the moment the listener runs.
        clusters, subs = SubscriptionStore(db).load()
        assert [c.name for c in clusters] == [c.name for c in cat.clusters() if not c.static]
        assert subs == cat.subscriptions()
        seen.append(([c.name for c in clusters], [s.id for s in subs]))

    cat.on_change(listener)
    await cat.create_cluster("dyn", BROKERS)
    sub = await cat.create_subscription(
        "kafka://dyn/lo", "service://Svc/handle", {}, sink_exists=sink_exists
    )
    await cat.update_cluster("dyn", {**BROKERS, "client.id": "x"})
    await cat.delete_subscription(sub.id)
    await cat.delete_cluster("dyn")
    assert seen == [
        (["dyn"], []),
        (["dyn"], [sub.id]),
        (["dyn"], [sub.id]),
        (["dyn"], []),
        ([], []),
    ]
    # Refused changes are not announced.
    with pytest.raises(AdminError):
        await cat.delete_cluster("dyn")
    assert len(seen) == 5


async def test_a_failing_listener_does_not_undo_or_hide_the_change(tmp_path: Path) -> None:
    cat = catalog(tmp_path / "metadata.db")
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("listener bug")

    cat.on_change(broken)
    cat.on_change(lambda: calls.append("next"))
    await cat.create_cluster("dyn", BROKERS)
    assert calls == ["broken", "next"]
    assert catalog(tmp_path / "metadata.db").cluster("dyn") is not None


class FailingStore(SubscriptionStore):
    async def put_cluster(self, cluster: KafkaCluster) -> None:
        raise OSError("disk full")

    async def put_subscription(self, subscription: Subscription, created_at: int) -> None:
        raise OSError("disk full")


async def test_a_failed_commit_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    await catalog(db).create_cluster("dyn", BROKERS)
    cat = Catalog(FailingStore(db), [])
    calls: list[int] = []
    cat.on_change(lambda: calls.append(1))
    with pytest.raises(OSError):
        await cat.create_cluster("other", BROKERS)
    with pytest.raises(OSError):
        await cat.update_cluster("dyn", {"metadata.broker.list": "elsewhere:9092"})
    with pytest.raises(OSError):
        await cat.create_subscription(
            "kafka://dyn/t", "service://Svc/handle", {}, sink_exists=sink_exists
        )
    assert cat.cluster("other") is None
    assert cat.cluster("dyn") == catalog(db).cluster("dyn")
    assert cat.subscriptions() == [] and calls == []


class SlowStore(SubscriptionStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    async def put_cluster(self, cluster: KafkaCluster) -> None:
        self.writing.set()
        await self.release.wait()
        await super().put_cluster(cluster)


async def test_a_cancelled_request_still_applies_what_it_commits(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "metadata.db")
    cat = Catalog(store, [])
    calls: list[int] = []
    cat.on_change(lambda: calls.append(1))
    request = asyncio.create_task(cat.create_cluster("dyn", BROKERS))
    await store.writing.wait()
    request.cancel()
    store.release.set()
    with pytest.raises(asyncio.CancelledError):
        await request
    # The write goes on to its end: stored, visible, announced, all or nothing.
    for _ in range(100):
        if calls:
            break
        await asyncio.sleep(0.01)
    assert calls == [1]
    assert cat.cluster("dyn") is not None
    assert catalog(tmp_path / "metadata.db").cluster("dyn") is not None


def test_the_tables_are_the_ones_named_in_the_design(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    SubscriptionStore(db).load()
    conn = sqlite3.connect(db)
    try:
        columns = {
            table: [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            for table in ("kafka_cluster", "subscription")
        }
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    assert columns == {
        "kafka_cluster": ["name", "properties", "created_at"],
        "subscription": ["id", "source", "sink", "options", "created_at"],
    }
    assert mode == "wal"


# --- clusters


async def test_static_clusters_cannot_be_created_patched_or_deleted(tmp_path: Path) -> None:
    cat = catalog(tmp_path / "metadata.db", TANSU)
    await refused(
        409,
        "kafka cluster 'tansu' conflicts with static configuration. Cluster names in schema "
        "registry cannot override statically configured clusters.",
        cat.create_cluster("tansu", BROKERS),
    )
    static_message = (
        "kafka cluster 'tansu' cannot be updated, because it was defined in the restate "
        "configuration file. Update the configuration file directly, or remove the "
        "configuration file"
    )
    await refused(409, static_message, cat.update_cluster("tansu", BROKERS))
    await refused(409, static_message, cat.delete_cluster("tansu", force=True))
    assert cat.cluster("tansu") == TANSU and cat.cluster("tansu").created_at == 0


async def test_cluster_names_are_unique_and_need_brokers(tmp_path: Path) -> None:
    cat = catalog(tmp_path / "metadata.db")
    await cat.create_cluster("dyn", BROKERS)
    await refused(
        409,
        "kafka cluster 'dyn' already exists in schema registry",
        cat.create_cluster("dyn", BROKERS),
    )
    needs = "properties must contain either 'bootstrap.servers' or 'metadata.broker.list'"
    await refused(400, f"kafka cluster 'noprops' {needs}", cat.create_cluster("noprops", {}))
    await refused(
        400, f"kafka cluster 'dyn' {needs}", cat.update_cluster("dyn", {"client.id": "x"})
    )
    # metadata.broker.list will do as well; the hostname format is not enforced.
    await cat.create_cluster("bad_name!", {"metadata.broker.list": "PLAINTEXT://h:1"})
    await refused(
        404,
        "not found in the schema registry: kafka cluster named 'nope'",
        cat.update_cluster("nope", BROKERS),
    )
    await refused(
        404,
        "not found in the schema registry: kafka cluster named 'nope'",
        cat.delete_cluster("nope"),
    )


async def test_properties_this_server_cannot_honour_are_refused(tmp_path: Path) -> None:
    cat = catalog(tmp_path / "metadata.db")
    await refused(
        400,
        "Kafka option 'foo.bar' is not supported by this server",
        cat.create_cluster("dyn", {**BROKERS, "foo.bar": "x"}),
    )
    await cat.create_cluster("dyn", BROKERS)
    await refused(
        400,
        "Kafka option 'fetch.min.bytes' must be an integer: 'soon'",
        cat.update_cluster("dyn", {**BROKERS, "fetch.min.bytes": "soon"}),
    )
    assert cat.cluster("dyn") == catalog(tmp_path / "metadata.db").cluster("dyn")
    assert cat.cluster("dyn").properties == BROKERS


async def test_deleting_a_cluster_with_subscriptions_needs_force(tmp_path: Path) -> None:
    cat = catalog(tmp_path / "metadata.db")
    await cat.create_cluster("dyn", BROKERS)
    sub = await cat.create_subscription(
        "kafka://dyn/lo", "service://Svc/handle", {}, sink_exists=sink_exists
    )
    await refused(
        409,
        f"Removing the kafka cluster 'dyn' leads to subscription '{sub.id}' being orphan. "
        "Remove the subscription first, or use the 'force' flag.",
        cat.delete_cluster("dyn"),
    )
    await cat.delete_cluster("dyn", force=True)
    # The subscription stays, orphaned, also after a restart.
    assert cat.cluster("dyn") is None
    assert catalog(tmp_path / "metadata.db").subscriptions() == [sub]


async def test_a_static_cluster_hides_a_stored_one_of_the_same_name(tmp_path: Path) -> None:
    db = tmp_path / "metadata.db"
    await catalog(db).create_cluster("tansu", BROKERS)
    cat = catalog(db, TANSU)
    assert cat.cluster("tansu") == TANSU
    assert cat.clusters() == [TANSU]


# --- subscriptions


async def test_subscription_options_get_group_and_client_ids(tmp_path: Path) -> None:
    cat = catalog(tmp_path / "metadata.db", TANSU)
    await cat.create_cluster("nocid", BROKERS)
    await cat.create_cluster("grouped", {**BROKERS, "group.id": "cluster-group"})

    async def options(source: str, given: dict[str, str]) -> dict[str, str]:
        sub = await cat.create_subscription(
            source, "service://Counter/add", given, sink_exists=sink_exists
        )
        return {**sub.options, "group.id": sub.options["group.id"].replace(sub.id, "<id>")}

    # The cluster names a client.id: only group.id is added, the subscription's own id.
    assert await options("kafka://tansu/orders", {"auto.offset.reset": "earliest"}) == {
        "auto.offset.reset": "earliest",
        "group.id": "<id>",
    }
    assert await options("kafka://nocid/t", {}) == {"group.id": "<id>", "client.id": "restate"}
    assert await options("kafka://nocid/t", {"client.id": "mine", "group.id": "g"}) == {
        "client.id": "mine",
        "group.id": "g",
    }
    assert await options("kafka://grouped/t", {}) == {
        "group.id": "cluster-group",
        "client.id": "restate",
    }


async def test_subscription_ids_are_new_sub_ids(tmp_path: Path) -> None:
    cat = catalog(tmp_path / "metadata.db", TANSU)
    ids = {
        (
            await cat.create_subscription(
                "kafka://tansu/t", "service://Counter/add", {}, sink_exists=sink_exists
            )
        ).id
        for _ in range(3)
    }
    # Duplicates are accepted, each with its own id (and so its own group).
    assert len(ids) == 3
    for sub_id in ids:
        assert re.fullmatch(r"sub_1[0-9A-Za-z]{22}", sub_id)
        assert subscription_id_error(sub_id) is None


@pytest.mark.parametrize(
    ("source", "sink", "status", "message"),
    [
        (
            "kafka://nope/orders",
            "service://Counter/add",
            400,
            'Kafka cluster \'nope\' not found. Available clusters: ["tansu", "a\\"b"]',
        ),
        (
            "http://tansu/orders",
            "service://Counter/add",
            400,
            "[META0009] invalid source URI 'http://tansu/orders': must have a scheme segment, "
            "with supported schemes: [kafka].",
        ),
        (
            "kafka://tansu/orders",
            "http://Counter/add",
            400,
            "[META0009] invalid sink URI 'http://Counter/add': must have a scheme segment, "
            "with supported schemes: [service].",
        ),
        (
            "kafka://tansu/orders",
            "service://Nope/add",
            400,
            "[META0009] invalid sink URI 'service://Nope/add': cannot find service/handler "
            "specified in the sink URI.",
        ),
        (
            "kafka://tansu/orders",
            "service://Counter",
            400,
            "[META0009] invalid sink URI 'service://Counter/': cannot find service/handler "
            "specified in the sink URI.",
        ),
        (
            "kafka://tansu",
            "service://Counter/add",
            400,
            "[META0009] invalid source URI 'kafka://tansu': the topic is missing",
        ),
        (
            "kafka://tansu/",
            "service://Counter/add",
            400,
            "[META0009] invalid source URI 'kafka://tansu/': the topic is missing",
        ),
        (
            "kafka://tansu/a/b",
            "service://Counter/add",
            400,
            "[META0009] invalid source URI 'kafka://tansu/a/b': 'a/b' is not a valid Kafka "
            "topic name (at most 249 of the characters a-z, A-Z, 0-9, '.', '_', '-')",
        ),
    ],
)
async def test_subscription_refusals(
    tmp_path: Path, source: str, sink: str, status: int, message: str
) -> None:
    odd = KafkaCluster('a"b', {"metadata.broker.list": "h:1"}, static=True)
    cat = catalog(tmp_path / "metadata.db", TANSU, odd)
    error = await refused(
        status, message, cat.create_subscription(source, sink, {}, sink_exists=sink_exists)
    )
    assert error.restate_code == ("META0009" if "META0009" in message else None)
    assert cat.subscriptions() == []


async def test_subscription_options_this_server_cannot_honour_are_refused(
    tmp_path: Path,
) -> None:
    cat = catalog(tmp_path / "metadata.db", TANSU)
    error = await refused(
        400,
        "Kafka option 'foo.bar' is not supported by this server",
        cat.create_subscription(
            "kafka://tansu/t",
            "service://Counter/add",
            {"auto.offset.reset": "earliest", "foo.bar": "x"},
            sink_exists=sink_exists,
        ),
    )
    assert error.restate_code is None
    assert cat.subscriptions() == []


async def test_deleting_a_subscription(tmp_path: Path) -> None:
    cat = catalog(tmp_path / "metadata.db", TANSU)
    sub = await cat.create_subscription(
        "kafka://tansu/wf", "service://Wf/run", {}, sink_exists=sink_exists
    )
    await cat.delete_subscription(sub.id)
    await refused(
        404,
        f"not found in the schema registry: subscription with id '{sub.id}'",
        cat.delete_subscription(sub.id),
    )
    assert catalog(tmp_path / "metadata.db", TANSU).subscriptions() == []
