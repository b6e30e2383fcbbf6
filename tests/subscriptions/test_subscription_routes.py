"""``/kafka-clusters`` and ``/subscriptions`` on the admin API, against what the official
server 1.7.12 answered (docs/official-1.7.12-probe-kafka.md, items 2 and 3).

Deliberate differences, asserted as such: options this server cannot honour, sources
without a valid topic and oversized inputs are refused (400) instead of accepted; 422
texts lack serde's "at line 1 column N" suffix; secrets in options are redacted too.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pyrestate.admin.app import AdminApp
from pyrestate.admin.ids import new_deployment_id, new_subscription_id, subscription_id_error
from pyrestate.admin.model import DiscoveredEndpoint
from pyrestate.admin.registry import Registry
from pyrestate.schemas import RegistryHolder
from pyrestate.subscriptions.admin import add_subscription_routes
from pyrestate.subscriptions.catalog import Catalog
from pyrestate.subscriptions.model import STATIC_CLUSTER_INFO, KafkaCluster
from pyrestate.subscriptions.store import SubscriptionStore

TANSU = KafkaCluster(
    "tansu",
    {"metadata.broker.list": "PLAINTEXT://127.0.0.1:19092", "client.id": "probe-client"},
    static=True,
)
TANSU_JSON = {
    "name": "tansu",
    "properties": {
        "metadata.broker.list": "PLAINTEXT://127.0.0.1:19092",
        "client.id": "probe-client",
    },
    "created_at": "1970-01-01T00:00:00Z",
    "info": [{"message": STATIC_CLUSTER_INFO}],
}
NOW_MS = 1_795_885_442_168
NOW = "2026-11-28T17:04:02.168000000Z"
BROKERS = {"bootstrap.servers": "127.0.0.1:19092"}
META0009 = "META0009"
DESERIALIZE = "Failed to deserialize the JSON body into the target type: "


def registry() -> Registry:
    """The probe's app: Counter (virtual object), Svc (service), Wf (workflow)."""
    services = (
        {"name": "Counter", "ty": "VIRTUAL_OBJECT", "handlers": [{"name": "add"}]},
        {"name": "Svc", "ty": "SERVICE", "handlers": [{"name": "handle"}]},
        {
            "name": "Wf",
            "ty": "WORKFLOW",
            "handlers": [{"name": "run", "ty": "WORKFLOW"}, {"name": "sig", "ty": "SHARED"}],
        },
    )
    discovered = DiscoveredEndpoint(
        protocol_type="BidiStream",
        http_version="HTTP/2.0",
        min_protocol_version=5,
        max_protocol_version=6,
        services=services,
        sdk_version="test/1",
    )
    _, reg, _ = Registry().add_deployment(
        uri="http://127.0.0.1:49080",
        discovered=discovered,
        new_id=new_deployment_id(0, 1),
        now_ms=0,
    )
    return reg


class Admin:
    def __init__(self, client: httpx.AsyncClient, catalog: Catalog) -> None:
        self.client = client
        self.catalog = catalog

    async def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return await self.client.request(method, path, json=body)

    async def subscribe(self, source: str, sink: str, **options: str) -> dict[str, Any]:
        body: dict[str, Any] = {"source": source, "sink": sink}
        if options:
            body["options"] = options
        r = await self.call("POST", "/subscriptions", body)
        assert r.status_code == 201, r.text
        return r.json()


@pytest.fixture
async def admin(tmp_path: Path) -> AsyncIterator[Admin]:
    holder = RegistryHolder(registry())

    async def save(_: Registry) -> None:
        raise AssertionError("the Kafka admin API never changes the registry")

    app = AdminApp(holder, save=save)
    catalog = Catalog(SubscriptionStore(tmp_path / "metadata.db"), [TANSU], clock_ms=lambda: NOW_MS)
    add_subscription_routes(app, catalog, holder)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        yield Admin(client, catalog)


def error(r: httpx.Response, status: int, message: str, code: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"message": message, "restate_code": code}


def plain(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.text == text


def accepted_empty(r: httpx.Response) -> None:
    assert r.status_code == 202, r.text
    assert r.content == b"" and r.headers["content-length"] == "0"


# --- /kafka-clusters


async def test_static_clusters_are_listed_and_described(admin: Admin) -> None:
    r = await admin.call("GET", "/kafka-clusters")
    assert r.status_code == 200
    assert r.json() == {"clusters": [TANSU_JSON]}
    r = await admin.call("GET", "/kafka-clusters/tansu")
    assert r.status_code == 200
    assert r.json() == {**TANSU_JSON, "subscriptions": []}
    assert list(r.json()) == ["name", "properties", "created_at", "subscriptions", "info"]
    error(
        await admin.call("GET", "/kafka-clusters/nope"),
        404,
        "The requested Kafka cluster 'nope' does not exist",
    )
    # Served under the version prefixes too.
    assert (await admin.call("GET", "/v4/kafka-clusters/tansu")).status_code == 200


async def test_dynamic_cluster_lifecycle(admin: Admin) -> None:
    r = await admin.call("POST", "/kafka-clusters", {"name": "dyn", "properties": BROKERS})
    assert r.status_code == 201
    assert r.headers["location"] == "kafka-clusters/dyn"
    assert r.json() == {"name": "dyn", "properties": BROKERS, "created_at": NOW}
    error(
        await admin.call("POST", "/kafka-clusters", {"name": "dyn", "properties": BROKERS}),
        409,
        "kafka cluster 'dyn' already exists in schema registry",
    )
    error(
        await admin.call("POST", "/kafka-clusters", {"name": "tansu", "properties": BROKERS}),
        409,
        "kafka cluster 'tansu' conflicts with static configuration. Cluster names in schema "
        "registry cannot override statically configured clusters.",
    )
    error(
        await admin.call("POST", "/kafka-clusters", {"name": "noprops", "properties": {}}),
        400,
        "kafka cluster 'noprops' properties must contain either 'bootstrap.servers' or "
        "'metadata.broker.list'",
    )
    r = await admin.call("POST", "/kafka-clusters", {"name": "bad_name!", "properties": BROKERS})
    assert r.status_code == 201 and r.headers["location"] == "kafka-clusters/bad_name!"

    # Full replace of the properties; created_at stays.
    patched = {**BROKERS, "client.id": "patched"}
    r = await admin.call("PATCH", "/kafka-clusters/dyn", {"properties": patched})
    assert r.status_code == 200
    assert r.json() == {"name": "dyn", "properties": patched, "created_at": NOW}
    error(
        await admin.call("PATCH", "/kafka-clusters/dyn", {"properties": {"client.id": "x"}}),
        400,
        "kafka cluster 'dyn' properties must contain either 'bootstrap.servers' or "
        "'metadata.broker.list'",
    )
    static_refusal = (
        "kafka cluster 'tansu' cannot be updated, because it was defined in the restate "
        "configuration file. Update the configuration file directly, or remove the "
        "configuration file"
    )
    error(
        await admin.call("PATCH", "/kafka-clusters/tansu", {"properties": BROKERS}),
        409,
        static_refusal,
    )

    # Listed with the static ones; list items carry no subscriptions.
    r = await admin.call("GET", "/kafka-clusters")
    assert r.json()["clusters"] == [
        TANSU_JSON,
        {"name": "dyn", "properties": patched, "created_at": NOW},
        {"name": "bad_name!", "properties": BROKERS, "created_at": NOW},
    ]

    sub = await admin.subscribe(
        "kafka://dyn/lo", "service://Svc/handle", **{"auto.offset.reset": "earliest"}
    )
    r = await admin.call("GET", "/kafka-clusters/dyn")
    assert r.json() == {
        "name": "dyn",
        "properties": patched,
        "created_at": NOW,
        "subscriptions": [],
    }
    r = await admin.call("GET", "/kafka-clusters/dyn?include_subscriptions=true")
    assert r.json()["subscriptions"] == [sub]
    assert sub["options"] == {"auto.offset.reset": "earliest", "group.id": sub["id"]}
    assert (await admin.call("GET", "/kafka-clusters/dyn?include_subscriptions=false")).json()[
        "subscriptions"
    ] == []

    error(
        await admin.call("DELETE", "/kafka-clusters/dyn"),
        409,
        f"Removing the kafka cluster 'dyn' leads to subscription '{sub['id']}' being orphan. "
        "Remove the subscription first, or use the 'force' flag.",
    )
    accepted_empty(await admin.call("DELETE", "/kafka-clusters/dyn?force=true"))
    # The subscription is not deleted with it: it is an orphan now.
    r = await admin.call("GET", f"/subscriptions/{sub['id']}")
    assert r.status_code == 200 and r.json() == sub
    error(
        await admin.call("GET", "/kafka-clusters/dyn"),
        404,
        "The requested Kafka cluster 'dyn' does not exist",
    )
    accepted_empty(await admin.call("DELETE", "/kafka-clusters/bad_name%21"))
    error(await admin.call("DELETE", "/kafka-clusters/tansu"), 409, static_refusal)
    error(
        await admin.call("DELETE", "/kafka-clusters/nope"),
        404,
        "not found in the schema registry: kafka cluster named 'nope'",
    )
    assert [c["name"] for c in (await admin.call("GET", "/kafka-clusters")).json()["clusters"]] == [
        "tansu"
    ]


async def test_cluster_secrets_are_redacted(admin: Admin) -> None:
    properties = {**BROKERS, "sasl.password": "hunter2", "security.protocol": "plaintext"}
    shown = {**properties, "sasl.password": "***"}
    r = await admin.call("POST", "/kafka-clusters", {"name": "sec", "properties": properties})
    assert r.status_code == 201 and r.json()["properties"] == shown
    assert (await admin.call("GET", "/kafka-clusters/sec")).json()["properties"] == shown
    clusters = (await admin.call("GET", "/kafka-clusters")).json()["clusters"]
    assert clusters[1]["properties"] == shown
    assert "hunter2" not in (await admin.call("GET", "/kafka-clusters")).text
    # Only shown redacted: the consumer gets the secret.
    assert admin.catalog.cluster("sec").properties["sasl.password"] == "hunter2"


async def test_cluster_requests_are_typed_and_bounded(admin: Admin) -> None:
    plain(
        await admin.call("POST", "/kafka-clusters", {"properties": BROKERS}),
        422,
        DESERIALIZE + "missing field `name`",
    )
    plain(
        await admin.call("POST", "/kafka-clusters", {"name": "x"}),
        422,
        DESERIALIZE + "missing field `properties`",
    )
    plain(
        await admin.call("POST", "/kafka-clusters", {"name": "x", "properties": {"a": 1}}),
        422,
        DESERIALIZE + 'properties."a": invalid type: 1, expected a string',
    )
    plain(
        await admin.call("PATCH", "/kafka-clusters/x", ["properties"]),
        422,
        DESERIALIZE + "invalid type: expected struct UpdateKafkaClusterRequest",
    )
    for name in ("", "n" * 257):
        error(
            await admin.call("POST", "/kafka-clusters", {"name": name, "properties": BROKERS}),
            400,
            "a Kafka cluster name has 1 to 256 characters",
        )
    many = {**BROKERS, **{f"k{i}": "v" for i in range(256)}}
    error(
        await admin.call("POST", "/kafka-clusters", {"name": "x", "properties": many}),
        400,
        "at most 256 properties are allowed, not 257",
    )
    error(
        await admin.call(
            "POST", "/kafka-clusters", {"name": "x", "properties": {**BROKERS, "debug": "x" * 4097}}
        ),
        400,
        "properties: 'debug' is too long: names and values have at most 4096 characters",
    )
    error(
        await admin.call(
            "POST", "/kafka-clusters", {"name": "x", "properties": {**BROKERS, "foo.bar": "x"}}
        ),
        400,
        "Kafka option 'foo.bar' is not supported by this server",
    )
    plain(
        await admin.call("GET", "/kafka-clusters/tansu?include_subscriptions=yes"),
        400,
        "Failed to deserialize query string: include_subscriptions: provided string was not "
        "`true` or `false`",
    )
    assert (await admin.call("GET", "/kafka-clusters")).json()["clusters"] == [TANSU_JSON]


# --- /subscriptions


async def test_create_subscriptions(admin: Admin) -> None:
    r = await admin.call(
        "POST",
        "/subscriptions",
        {
            "source": "kafka://tansu/orders",
            "sink": "service://Counter/add",
            "options": {"auto.offset.reset": "earliest"},
        },
    )
    assert r.status_code == 201
    sub_id = r.json()["id"]
    assert re.fullmatch(r"sub_1[0-9A-Za-z]{22}", sub_id)
    assert r.headers["location"] == f"subscriptions/{sub_id}"
    assert r.json() == {
        "id": sub_id,
        "source": "kafka://tansu/orders",
        "sink": "service://Counter/add",
        "options": {"auto.offset.reset": "earliest", "group.id": sub_id},
    }
    # No options: group.id only, the cluster (tansu) names a client.id.
    svc = await admin.subscribe("kafka://tansu/svc", "service://Svc/handle")
    assert svc["options"] == {"group.id": svc["id"]}
    # A cluster without client.id: "restate" is added.
    await admin.call("POST", "/kafka-clusters", {"name": "nocid", "properties": BROKERS})
    nocid = await admin.subscribe("kafka://nocid/t", "service://Svc/handle")
    assert nocid["options"] == {"group.id": nocid["id"], "client.id": "restate"}
    # Workflow handlers (main and shared) are accepted, as officially; duplicates too.
    await admin.subscribe("kafka://tansu/wf", "service://Wf/run")
    await admin.subscribe("kafka://tansu/wf", "service://Wf/sig")
    again = await admin.subscribe("kafka://tansu/svc", "service://Svc/handle")
    assert again["id"] != svc["id"] and again["options"] == {"group.id": again["id"]}


async def test_secret_options_are_redacted(admin: Admin) -> None:
    sub = await admin.subscribe(
        "kafka://tansu/t", "service://Svc/handle", **{"sasl.password": "hunter2"}
    )
    assert sub["options"]["sasl.password"] == "***"
    r = await admin.call("GET", f"/subscriptions/{sub['id']}")
    assert r.json()["options"]["sasl.password"] == "***"
    assert admin.catalog.subscription(sub["id"]).options["sasl.password"] == "hunter2"


@pytest.mark.parametrize(
    ("body", "message", "code"),
    [
        (
            {"source": "kafka://nope/orders", "sink": "service://Counter/add"},
            "Kafka cluster 'nope' not found. Available clusters: [\"tansu\"]",
            None,
        ),
        (
            {"source": "kafka://tansu/orders", "sink": "service://Nope/add"},
            "[META0009] invalid sink URI 'service://Nope/add': cannot find service/handler "
            "specified in the sink URI.",
            META0009,
        ),
        (
            {"source": "kafka://tansu/orders", "sink": "service://Counter/nope"},
            "[META0009] invalid sink URI 'service://Counter/nope': cannot find service/handler "
            "specified in the sink URI.",
            META0009,
        ),
        (
            {"source": "kafka://tansu/orders", "sink": "service://Counter"},
            "[META0009] invalid sink URI 'service://Counter/': cannot find service/handler "
            "specified in the sink URI.",
            META0009,
        ),
        (
            {"source": "http://tansu/orders", "sink": "service://Counter/add"},
            "[META0009] invalid source URI 'http://tansu/orders': must have a scheme segment, "
            "with supported schemes: [kafka].",
            META0009,
        ),
        (
            {"source": "kafka://tansu/orders", "sink": "http://Counter/add"},
            "[META0009] invalid sink URI 'http://Counter/add': must have a scheme segment, "
            "with supported schemes: [service].",
            META0009,
        ),
        # Accepted officially, and its consumer fails forever: refused here.
        (
            {"source": "kafka://tansu", "sink": "service://Counter/add"},
            "[META0009] invalid source URI 'kafka://tansu': the topic is missing",
            META0009,
        ),
        (
            {
                "source": "kafka://tansu/orders",
                "sink": "service://Counter/add",
                "options": {"auto.offset.reset": "earliest", "group.id": "g", "foo.bar": "x"},
            },
            "Kafka option 'foo.bar' is not supported by this server",
            None,
        ),
        (
            {
                "source": "kafka://tansu/orders",
                "sink": "service://Counter/add",
                "options": {"auto.offset.reset": "sometimes"},
            },
            "Kafka option 'auto.offset.reset' must be one of beginning, earliest, end, error, "
            "largest, latest, smallest: 'sometimes'",
            None,
        ),
        # Bounds.
        (
            {"source": "kafka://tansu/" + "t" * 4083, "sink": "service://Counter/add"},
            "the source URI is longer than 4096 characters",
            None,
        ),
        (
            {"source": "kafka://tansu/t", "sink": "service://Counter/" + "a" * 4080},
            "the sink URI is longer than 4096 characters",
            None,
        ),
        (
            {
                "source": "kafka://tansu/t",
                "sink": "service://Counter/add",
                "options": {f"k{i}": "v" for i in range(257)},
            },
            "at most 256 options are allowed, not 257",
            None,
        ),
        (
            {
                "source": "kafka://tansu/t",
                "sink": "service://Counter/add",
                "options": {"client.id": "c" * 4097},
            },
            "options: 'client.id' is too long: names and values have at most 4096 characters",
            None,
        ),
        (
            {
                "source": "kafka://tansu/t",
                "sink": "service://Counter/add",
                "options": {"k" * 4097: "v"},
            },
            f"options: '{'k' * 64}' is too long: names and values have at most 4096 characters",
            None,
        ),
    ],
)
async def test_subscription_refusals(
    admin: Admin, body: dict[str, Any], message: str, code: str | None
) -> None:
    error(await admin.call("POST", "/subscriptions", body), 400, message, code)
    assert (await admin.call("GET", "/subscriptions")).json() == {"subscriptions": []}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"source": "not a uri", "sink": "service://Counter/add"}, "source: invalid uri character"),
        ({"source": "kafka://tansu/orders"}, "missing field `sink`"),
        ({"sink": "service://Counter/add"}, "missing field `source`"),
        ({"source": "kafka://tansu/ö", "sink": "service://C/a"}, "source: invalid uri character"),
        ({"source": "kafka://tansu/t", "sink": "service:///add"}, "sink: invalid format"),
        (
            {"source": 5, "sink": "service://Counter/add"},
            "source: invalid type: 5, expected a string",
        ),
        (
            {"source": "kafka://tansu/t", "sink": "service://Counter/add", "options": []},
            "options: invalid type: an array, expected a map",
        ),
        (
            {"source": "kafka://tansu/t", "sink": "service://Counter/add", "options": {"a": True}},
            'options."a": invalid type: true, expected a string',
        ),
        ("kafka://tansu/t", "invalid type: expected struct CreateSubscriptionRequest"),
    ],
)
async def test_malformed_subscription_bodies(admin: Admin, body: Any, reason: str) -> None:
    plain(await admin.call("POST", "/subscriptions", body), 422, DESERIALIZE + reason)


async def test_list_get_and_delete_subscriptions(admin: Admin) -> None:
    svc = await admin.subscribe("kafka://tansu/svc", "service://Svc/handle")
    run = await admin.subscribe("kafka://tansu/wf", "service://Wf/run")
    sig = await admin.subscribe("kafka://tansu/wf", "service://Wf/sig")
    doomed = await admin.subscribe("kafka://tansu/orders", "service://Counter/add")

    async def listed(query: str = "") -> list[dict[str, Any]]:
        r = await admin.call("GET", "/subscriptions" + query)
        assert r.status_code == 200
        return r.json()["subscriptions"]

    assert await listed() == [svc, run, sig, doomed]
    assert await listed("?sink=service://Svc/handle") == [svc]
    assert await listed("?source=kafka://tansu/wf") == [run, sig]
    assert await listed("?source=kafka://tansu/wf&sink=service://Wf/sig") == [sig]
    assert await listed("?sink=service://Nope/x") == []

    r = await admin.call("GET", f"/subscriptions/{svc['id']}")
    assert r.status_code == 200 and r.json() == svc
    unknown = new_subscription_id(0, 0)
    error(
        await admin.call("GET", f"/subscriptions/{unknown}"),
        404,
        f"The requested subscription '{unknown}' does not exist",
    )
    for method in ("GET", "DELETE"):
        plain(
            await admin.call(method, "/subscriptions/garbage"),
            400,
            "Invalid URL: Cannot parse `subscription` with value `garbage`: bad format",
        )
    plain(
        await admin.call("GET", f"/subscriptions/dp_1{svc['id'][5:]}"),
        400,
        f"Invalid URL: Cannot parse `subscription` with value `dp_1{svc['id'][5:]}`: "
        "id doesn't match the expected type",
    )

    accepted_empty(await admin.call("DELETE", f"/subscriptions/{doomed['id']}"))
    error(
        await admin.call("DELETE", f"/subscriptions/{doomed['id']}"),
        404,
        f"not found in the schema registry: subscription with id '{doomed['id']}'",
    )
    assert await listed() == [svc, run, sig]


def test_subscription_ids_are_ulids_like_the_official_ones() -> None:
    # An id from the probe, rebuilt from its time (17:02:40.450 on the probe day) and bits.
    official = "sub_162bxgylEN7UjAyAVYyoXwR"
    random80 = 0xE13E19BF737657B54CC6
    assert new_subscription_id(1_795_885_360_450, random80) == official
    assert subscription_id_error(official) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("garbage", "bad format"),
        ("sub_nope", "unrecognized codec version"),
        ("dp_14F0ex0wY4ER8MsBVEST8yZ", "id doesn't match the expected type"),
        ("sub_1abc", "bad length"),
        ("sub_14F0ex0wY4ER8MsBVEST8y!", "base62 decode error"),
        ("sub_14F0ex0wY4ER8MsBVEST8yZZ", "bad length"),
        ("sub_14F0ex0wY4ER8MsBVEST8yZ", None),
    ],
)
def test_subscription_id_errors(text: str, reason: str | None) -> None:
    assert subscription_id_error(text) == reason
