"""Kafka subscriptions end to end: records on a real Kafka-protocol broker (Tansu) become
invocations of official-SDK handlers, in order per key, exactly once, across a SIGKILL.

The examples are the two seed patterns: examples/user_feed.py (transactional event
processing) and examples/package_tracker.py (event enrichment). The broker is configured
the official way (RESTATE_INGRESS__KAFKA_CLUSTERS), so PYRESTATE_E2E_TARGET=official runs
the same tests against the official server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from harness import Deployment, Server, sql_rows, wait_until
from tansu import Tansu, tansu_broker  # noqa: F401  (the fixture "tansu")
from test_official_cli import Run, restate  # noqa: F401  (the official CLI fixture)

USERS = 50
POSTS = 1000  # over USERS users: 20 each


@pytest.fixture
def server_options(tansu: Tansu) -> dict[str, Any]:
    return {"extra_env": tansu.cluster_env()}


def subscribe(http: httpx.Client, server: Server, topic: str, sink: str) -> str:
    options = {"auto.offset.reset": "earliest"}
    if server.kind == "official":
        # librdkafka's group must notice a killed member quickly (pyrestate joins none).
        options |= {"session.timeout.ms": "6000", "max.poll.interval.ms": "10000"}
    resp = http.post(
        f"{server.admin_url}/subscriptions",
        json={"source": f"kafka://tansu/{topic}", "sink": sink, "options": options},
    )
    assert resp.status_code == 201, resp.text
    sub: dict[str, Any] = resp.json()
    assert resp.headers["location"] == f"subscriptions/{sub['id']}"
    assert sub["options"]["group.id"] == sub["id"]
    return str(sub["id"])


def post(i: int) -> tuple[bytes, bytes]:
    """The i-th post: by user i % USERS, that user's (i // USERS)-th."""
    seq = i // USERS
    content = "buy spam now" if seq == 3 else f"post {seq}"
    return f"user-{i % USERS:02d}".encode(), json.dumps({"seq": seq, "content": content}).encode()


def completed(http: httpx.Client, server: Server, sub: str) -> int:
    rows = sql_rows(
        http,
        server,
        "SELECT count(*) AS n FROM sys_invocation WHERE status = 'completed' "
        f"AND invoked_by_subscription_id = '{sub}'",
    )
    return int(rows[0]["n"])


def assert_feeds_exact(http: httpx.Client, server: Server) -> None:
    expected = [
        {"seq": s, "status": "rejected" if s == 3 else "published"} for s in range(POSTS // USERS)
    ]
    for u in range(USERS):
        resp = http.get(f"{server.ingress_url}/UserFeed/user-{u:02d}/feed")
        assert resp.status_code == 200, resp.text
        assert resp.json() == expected, f"user-{u:02d}: every post once, in order"


async def test_posts_are_processed_once_each_in_order_per_user(
    server: Server, deployment: Callable[..., Deployment], http: httpx.Client, tansu: Tansu
) -> None:
    deployment("user_feed")
    await tansu.create_topic("social-media-posts", 4)
    sub = subscribe(http, server, "social-media-posts", "service://UserFeed/processPost")
    await tansu.produce("social-media-posts", (post(i) for i in range(POSTS)))

    wait_until(lambda: completed(http, server, sub) >= POSTS, timeout=180, what="all posts")
    assert_feeds_exact(http, server)
    rows = sql_rows(
        http,
        server,
        "SELECT invoked_by, count(*) AS n, count(DISTINCT target_service_key) AS users "
        f"FROM sys_invocation WHERE invoked_by_subscription_id = '{sub}' GROUP BY invoked_by",
    )
    assert rows == [{"invoked_by": "subscription", "n": POSTS, "users": USERS}]
    # What the handler was told of its record, as the official server tells it.
    source = http.get(f"{server.ingress_url}/UserFeed/user-07/source").json()
    assert source["kafka.partition"] in {"0", "1", "2", "3"}
    assert int(source["kafka.offset"]) >= 0


async def test_a_server_killed_mid_stream_loses_and_repeats_nothing(
    server: Server, deployment: Callable[..., Deployment], http: httpx.Client, tansu: Tansu
) -> None:
    deployment("user_feed")
    await tansu.create_topic("social-media-posts", 4)
    sub = subscribe(http, server, "social-media-posts", "service://UserFeed/processPost")

    async def publish() -> None:
        producer = tansu.producer()
        await producer.start()
        try:
            for i in range(POSTS):
                key, value = post(i)
                await producer.send_and_wait("social-media-posts", key=key, value=value)
                await asyncio.sleep(0.003)
        finally:
            await producer.stop()

    publishing = asyncio.create_task(publish())
    await asyncio.to_thread(
        wait_until, lambda: completed(http, server, sub) >= 150, timeout=120, what="some posts"
    )
    server.kill()
    assert not publishing.done(), "killed mid-stream"
    await asyncio.sleep(0.5)
    server.start()
    await publishing
    await asyncio.to_thread(
        wait_until,
        lambda: completed(http, server, sub) >= POSTS,
        timeout=180,
        what="all posts after the crash",
    )
    assert_feeds_exact(http, server)
    rows = sql_rows(
        http,
        server,
        f"SELECT count(*) AS n FROM sys_invocation WHERE invoked_by_subscription_id = '{sub}'",
    )
    assert rows == [{"n": POSTS}], "one invocation per record: none lost, none twice"


async def test_package_locations_are_joined_with_what_was_registered(
    server: Server, deployment: Callable[..., Deployment], http: httpx.Client, tansu: Tansu
) -> None:
    deployment("package_tracker")
    for pkg in ("pkg-1", "pkg-2"):
        resp = http.post(
            f"{server.ingress_url}/PackageTracker/{pkg}/registerPackage",
            json={"finalDestination": f"{pkg} street"},
        )
        assert resp.status_code == 200, resp.text
    await tansu.create_topic("package-location-updates", 2)
    sub = subscribe(
        http, server, "package-location-updates", "service://PackageTracker/updateLocation"
    )
    updates = [
        (pkg, {"location": f"hub {n}", "timestamp": n})
        for n in range(10)
        for pkg in ("pkg-1", "pkg-2", "pkg-unknown")
    ]
    await tansu.produce(
        "package-location-updates",
        ((pkg.encode(), json.dumps(u).encode()) for pkg, u in updates),
    )
    wait_until(lambda: completed(http, server, sub) >= 30, timeout=120, what="all updates")
    for pkg in ("pkg-1", "pkg-2"):
        info = http.get(f"{server.ingress_url}/PackageTracker/{pkg}/getPackageInfo").json()
        assert info == {
            "finalDestination": f"{pkg} street",
            "locations": [u for p, u in updates if p == pkg],
        }
    failed = sql_rows(
        http,
        server,
        "SELECT target_service_key, completion_failure FROM sys_invocation "
        f"WHERE invoked_by_subscription_id = '{sub}' AND completion_result = 'failure'",
    )
    assert len(failed) == 10 and {r["target_service_key"] for r in failed} == {"pkg-unknown"}
    assert all("pkg-unknown not found" in r["completion_failure"] for r in failed)


@pytest.mark.server_only
def test_the_official_cli_lists_and_describes_subscriptions(
    server: Server,
    deployment: Callable[..., Deployment],
    http: httpx.Client,
    tansu: Tansu,
    restate: Run,  # noqa: F811
) -> None:
    deployment("user_feed")
    sub = subscribe(http, server, "social-media-posts", "service://UserFeed/processPost")
    listed = restate("subscriptions", "list").stdout
    assert sub in listed and "kafka://tansu/social-media-posts" in listed
    assert "service://UserFeed/processPost" in listed
    described = restate("subscriptions", "describe", sub).stdout
    assert f"PLAINTEXT://{tansu.bootstrap}" in described, "brokers of its cluster"
    assert "auto.offset.reset" in described and "earliest" in described
    clusters = restate("kafka-clusters", "list").stdout
    assert "tansu" in clusters and f"PLAINTEXT://{tansu.bootstrap}" in clusters
    restate("subscriptions", "delete", sub)
    assert http.get(f"{server.admin_url}/subscriptions/{sub}").status_code == 404
