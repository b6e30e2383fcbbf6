"""`pyrestate subscriptions|sub ...` and `pyrestate kafka-clusters|kc ...` against a real
server with a static Kafka cluster on a real broker (Tansu), shown as the official CLI
shows them (docs/official-1.7.12-probe-kafka.md, "CLI")."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import run, run_json
from harness import Deployment, Server

E2E_DIR = Path(__file__).resolve().parents[1] / "e2e"
if str(E2E_DIR) not in sys.path:
    sys.path.insert(0, str(E2E_DIR))

from tansu import Tansu, tansu_broker  # noqa: E402, F401  (the fixture "tansu")

DeploymentFactory = Callable[..., Deployment]


@pytest.fixture
def server_options(tansu: Tansu) -> dict[str, Any]:
    return {"extra_env": tansu.cluster_env()}


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The CLI shows times in the local zone, as the official one does.
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def rows(output: str) -> list[list[str]]:
    """The words of each line, without blank lines and the rule under table headers."""
    return [line.split() for line in output.splitlines() if line.strip(" ─")]


def test_kafka_clusters_list_and_describe(server: Server, tansu: Tansu, utc: None) -> None:
    brokers = f"PLAINTEXT://{tansu.bootstrap}"
    for group in ("kafka-clusters", "kc"):
        for command in ("list", "ls"):
            table = rows(run(server, group, command).stdout)
            assert table[0] == ["NAME", "BROKERS", "PROPERTIES", "CREATED-AT"]
            assert table[1] == [
                "tansu",
                brokers,
                "1",
                "Thu",
                "01",
                "Jan",
                "1970",
                "00:00:00",
                "+00:00",
            ]
    (listed,) = run_json(server, "kc", "list")
    assert listed["name"] == "tansu" and listed["properties"] == {"metadata.broker.list": brokers}
    assert listed["created_at"] == "1970-01-01T00:00:00Z"

    described = run(server, "kc", "describe", "tansu").stdout
    assert re.search(r"Name:\s+tansu", described)
    assert re.search(rf"Brokers:\s+{re.escape(brokers)}", described)
    assert "configured in the static cluster configuration" in described
    assert run_json(server, "kc", "describe", "tansu")["subscriptions"] == []
    missing = run(server, "kc", "describe", "nope", code=1).stderr
    assert "404" in missing and "The requested Kafka cluster 'nope' does not exist" in missing


def test_subscriptions_create_list_describe_delete(
    server: Server, tansu: Tansu, deployment: DeploymentFactory
) -> None:
    deployment("counter")
    brokers = f"PLAINTEXT://{tansu.bootstrap}"
    created = run(
        server,
        "subscriptions",
        "create",
        "kafka://tansu/orders",
        "service://Counter/add",
        "--option",
        "auto.offset.reset=earliest",
    ).stdout
    match = re.search(r"Created subscription (sub_1[0-9A-Za-z]{22})", created)
    assert match, created
    sub_id = match.group(1)
    assert re.search(rf"Kafka brokers:\s+{re.escape(brokers)}", created)

    other = run_json(server, "sub", "create", "kafka://tansu/orders", "service://Counter/get")
    assert other["sink"] == "service://Counter/get"
    assert other["options"] == {"group.id": other["id"], "client.id": "restate"}

    for group, command in (("subscriptions", "list"), ("sub", "ls")):
        table = rows(run(server, group, command).stdout)
        assert table[0] == ["ID", "SOURCE", "SINK", "OPTIONS"]
        # Sorted by id, options counted (auto.offset.reset, group.id, client.id).
        assert table[1:] == sorted(
            [
                [sub_id, "kafka://tansu/orders", "service://Counter/add", "3"],
                [other["id"], "kafka://tansu/orders", "service://Counter/get", "2"],
            ]
        )

    described = run(server, "sub", "describe", sub_id).stdout
    lines = rows(described)
    assert lines[0] == ["Subscription:"]
    assert ["ID:", sub_id] in lines and ["Sink:", "service://Counter/add"] in lines
    assert ["Kafka", "brokers:", brokers] in lines
    options = lines[lines.index(["Options:"]) + 1 :]
    assert options == [
        ["KEY", "VALUE"],
        ["auto.offset.reset", "earliest"],
        ["client.id", "restate"],
        ["group.id", sub_id],
    ]
    assert run(server, "sub", "get", sub_id).stdout == described
    assert run_json(server, "sub", "describe", sub_id)["options"]["group.id"] == sub_id
    of_cluster = run_json(server, "kc", "describe", "tansu")["subscriptions"]
    assert sorted(s["id"] for s in of_cluster) == sorted([sub_id, other["id"]])

    assert f"Deleted subscription {sub_id}" in run(server, "sub", "delete", sub_id).stdout
    run(server, "sub", "rm", other["id"])
    assert run_json(server, "sub", "list") == []
    gone = run(server, "sub", "describe", sub_id, code=1).stderr
    assert f"The requested subscription '{sub_id}' does not exist" in gone


def test_subscription_refusals_are_one_line(
    server: Server, tansu: Tansu, deployment: DeploymentFactory
) -> None:
    deployment("counter")
    bad_sink = run(
        server, "sub", "create", "kafka://tansu/orders", "service://Counter/nope", code=1
    ).stderr
    assert bad_sink.startswith("error: POST /subscriptions failed with 400 Bad Request: ")
    assert "[META0009] invalid sink URI 'service://Counter/nope'" in bad_sink
    assert len(bad_sink.splitlines()) == 1
    unknown = run(server, "sub", "create", "kafka://nope/t", "service://Counter/add", code=1)
    assert "Kafka cluster 'nope' not found. Available clusters: [\"tansu\"]" in unknown.stderr
    malformed = run(
        server, "sub", "create", "kafka://tansu/t", "service://Counter/add", "-o", "x", code=2
    )
    assert "--option 'x': want KEY=VALUE" in malformed.stderr
    garbage = run(server, "sub", "delete", "garbage", code=1).stderr
    assert "400" in garbage and "Cannot parse `subscription` with value `garbage`" in garbage
    assert run_json(server, "sub", "list") == []
