"""Kafka clusters and subscriptions: what the admin API stores and the consumers run.

Properties and options are librdkafka-style names (``bootstrap.servers``,
``auto.offset.reset``, ...), as the official server takes them; the consumer maps the ones
it honours onto its Kafka client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# A cluster configured in the server's settings: shown with this created_at and notice.
STATIC_CREATED_AT = 0
STATIC_CLUSTER_INFO = (
    "This Kafka cluster was configured in the static cluster configuration, this is "
    "deprecated. Please register it using the new Kafka Admin functionalities."
)
BROKER_PROPERTIES = ("bootstrap.servers", "metadata.broker.list")


@dataclass(frozen=True, slots=True)
class KafkaCluster:
    name: str
    properties: Mapping[str, str]  # librdkafka-style, secrets included (redact to show)
    created_at: int = STATIC_CREATED_AT  # epoch ms
    static: bool = False  # from the settings, not the admin API

    def brokers(self) -> list[str]:
        """host:port of each broker, any ``PLAINTEXT://``-style prefix dropped."""
        for name in BROKER_PROPERTIES:
            value = self.properties.get(name)
            if value:
                return [b.strip().rpartition("://")[2] for b in value.split(",") if b.strip()]
        return []


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str  # sub_1...
    source: str  # kafka://cluster/topic
    sink: str  # service://Service/handler
    options: Mapping[str, str] = field(default_factory=dict)  # group.id always set

    @property
    def cluster(self) -> str:
        return self.source.removeprefix("kafka://").partition("/")[0]

    @property
    def topic(self) -> str:
        return self.source.removeprefix("kafka://").partition("/")[2]

    @property
    def service(self) -> str:
        return self.sink.removeprefix("service://").partition("/")[0]

    @property
    def handler(self) -> str:
        return self.sink.removeprefix("service://").partition("/")[2]

    @property
    def group_id(self) -> str:
        return self.options["group.id"]
