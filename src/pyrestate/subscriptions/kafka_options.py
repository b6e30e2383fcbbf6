"""librdkafka-style properties (what Restate users write) as aiokafka consumer arguments.

The official server hands cluster properties and subscription options to librdkafka. Here
the ones with a meaning for our consumer are mapped; tuning knobs of librdkafka's own
machinery are accepted and have no effect; any other name is refused when the cluster or
subscription is created, so that a subscription never sits accepted but unable to start.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any

from pyrestate.subscriptions.model import BROKER_PROPERTIES


class KafkaOptionError(ValueError):
    pass


def _int(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise KafkaOptionError(f"Kafka option '{name}' must be an integer: '{value}'") from None
    if not 0 <= number <= 2**31 - 1:
        raise KafkaOptionError(f"Kafka option '{name}' is out of range: '{value}'")
    return number


def _choice(name: str, value: str, choices: Mapping[str, str]) -> str:
    found = choices.get(value.lower())
    if found is None:
        allowed = ", ".join(sorted(choices))
        raise KafkaOptionError(f"Kafka option '{name}' must be one of {allowed}: '{value}'")
    return found


def _bool(name: str, value: str) -> bool:
    return _choice(name, value, {"true": "1", "false": "", "1": "1", "0": ""}) == "1"


_OFFSET_RESET = {
    "earliest": "earliest",
    "smallest": "earliest",
    "beginning": "earliest",
    "latest": "latest",
    "largest": "latest",
    "end": "latest",
    "error": "none",
}
_SECURITY = {p.lower(): p for p in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")}
_SASL = {m.lower(): m for m in ("PLAIN", "GSSAPI", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")}
_ISOLATION = {"read_committed": "read_committed", "read_uncommitted": "read_uncommitted"}

# librdkafka name -> (aiokafka argument, conversion).
_MAPPED: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "client.id": ("client_id", lambda n, v: v),
    "group.id": ("group_id", lambda n, v: v),
    "auto.offset.reset": ("auto_offset_reset", lambda n, v: _choice(n, v, _OFFSET_RESET)),
    "security.protocol": ("security_protocol", lambda n, v: _choice(n, v, _SECURITY)),
    "sasl.mechanism": ("sasl_mechanism", lambda n, v: _choice(n, v, _SASL)),
    "sasl.mechanisms": ("sasl_mechanism", lambda n, v: _choice(n, v, _SASL)),
    "sasl.username": ("sasl_plain_username", lambda n, v: v),
    "sasl.password": ("sasl_plain_password", lambda n, v: v),
    "sasl.kerberos.service.name": ("sasl_kerberos_service_name", lambda n, v: v),
    "isolation.level": ("isolation_level", lambda n, v: _choice(n, v, _ISOLATION)),
    "fetch.min.bytes": ("fetch_min_bytes", _int),
    "fetch.max.bytes": ("fetch_max_bytes", _int),
    "fetch.wait.max.ms": ("fetch_max_wait_ms", _int),
    "max.partition.fetch.bytes": ("max_partition_fetch_bytes", _int),
    "fetch.message.max.bytes": ("max_partition_fetch_bytes", _int),
    "request.timeout.ms": ("request_timeout_ms", _int),
    "metadata.max.age.ms": ("metadata_max_age_ms", _int),
    "topic.metadata.refresh.interval.ms": ("metadata_max_age_ms", _int),
    "reconnect.backoff.ms": ("reconnect_backoff_ms", _int),
    "retry.backoff.ms": ("retry_backoff_ms", _int),
    "connections.max.idle.ms": ("connections_max_idle_ms", _int),
    "check.crcs": ("check_crcs", _bool),
}
_SSL_FILES = {
    "ssl.ca.location": "cafile",
    "ssl.certificate.location": "certfile",
    "ssl.key.location": "keyfile",
    "ssl.key.password": "password",
}
# Group membership settings (offsets are tracked by the server, partitions assigned by
# it), librdkafka's own queues, logging and timing knobs: accepted, without effect here.
_NO_EFFECT = frozenset(
    {
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "partition.assignment.strategy",
        "group.instance.id",
        "group.protocol",
        "enable.auto.commit",
        "enable.auto.offset.store",
        "auto.commit.interval.ms",
        "enable.partition.eof",
        "queued.min.messages",
        "queued.max.messages.kbytes",
        "debug",
        "log_level",
        "log.connection.close",
        "statistics.interval.ms",
        "socket.keepalive.enable",
        "socket.timeout.ms",
        "socket.connection.setup.timeout.ms",
        "api.version.request",
        "broker.address.family",
        "allow.auto.create.topics",
        "client.rack",
        "https.ca.location",
        "ssl.endpoint.identification.algorithm",
        *BROKER_PROPERTIES,
    }
)


def check_options(options: Mapping[str, str]) -> None:
    """Raise KafkaOptionError naming the first option this server cannot honour."""
    _convert(options)


def consumer_arguments(properties: Mapping[str, str]) -> dict[str, Any]:
    """aiokafka consumer keyword arguments for cluster properties merged with options
    (OSError if an SSL file named in them cannot be read)."""
    out, ssl_files = _convert(properties)
    if ssl_files:
        context = ssl.create_default_context(cafile=ssl_files.get("cafile"))
        if "certfile" in ssl_files:
            context.load_cert_chain(
                ssl_files["certfile"], ssl_files.get("keyfile"), ssl_files.get("password")
            )
        out["ssl_context"] = context
    return out


def _convert(properties: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    out: dict[str, Any] = {}
    ssl_files: dict[str, str] = {}
    for name, value in properties.items():
        if not isinstance(value, str):
            raise KafkaOptionError(f"Kafka option '{name}' must be a string")
        if name in _MAPPED:
            arg, convert = _MAPPED[name]
            out[arg] = convert(name, value)
        elif name in _SSL_FILES:
            ssl_files[_SSL_FILES[name]] = value
        elif name not in _NO_EFFECT:
            raise KafkaOptionError(f"Kafka option '{name}' is not supported by this server")
    return out, ssl_files


_SECRET_MARKS = ("password", "secret", "sasl.jaas.config", "ssl.key.pem", "ssl_key")


def redacted(properties: Mapping[str, str]) -> dict[str, str]:
    """Properties as the admin API shows them: secrets replaced by ``***``."""
    return {
        k: ("***" if any(mark in k for mark in _SECRET_MARKS) else v) for k, v in properties.items()
    }
