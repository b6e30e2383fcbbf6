"""librdkafka-style properties mapped onto the aiokafka consumer, or refused by name."""

from __future__ import annotations

import pytest

from pyrestate.subscriptions.kafka_options import (
    KafkaOptionError,
    check_options,
    consumer_arguments,
    redacted,
)


def test_honoured_options_become_consumer_arguments() -> None:
    args = consumer_arguments(
        {
            "bootstrap.servers": "h:1",
            "group.id": "g",
            "client.id": "c",
            "auto.offset.reset": "smallest",
            "security.protocol": "sasl_plaintext",
            "sasl.mechanism": "scram-sha-256",
            "sasl.username": "u",
            "sasl.password": "p",
            "fetch.wait.max.ms": "50",
            "isolation.level": "read_committed",
            "session.timeout.ms": "6000",  # group membership: no effect here
            "enable.auto.commit": "true",
        }
    )
    assert args == {
        "group_id": "g",
        "client_id": "c",
        "auto_offset_reset": "earliest",
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "u",
        "sasl_plain_password": "p",
        "fetch_max_wait_ms": 50,
        "isolation_level": "read_committed",
    }


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"foo.bar": "x"}, "Kafka option 'foo.bar' is not supported by this server"),
        ({"auto.offset.reset": "sideways"}, "Kafka option 'auto.offset.reset' must be one of"),
        ({"fetch.min.bytes": "lots"}, "Kafka option 'fetch.min.bytes' must be an integer"),
        ({"fetch.min.bytes": "-1"}, "Kafka option 'fetch.min.bytes' is out of range"),
        ({"fetch.min.bytes": str(2**40)}, "Kafka option 'fetch.min.bytes' is out of range"),
        ({"check.crcs": "maybe"}, "Kafka option 'check.crcs' must be one of"),
    ],
)
def test_options_this_server_cannot_honour_are_refused_by_name(
    options: dict[str, str], problem: str
) -> None:
    with pytest.raises(KafkaOptionError) as e:
        check_options(options)
    assert str(e.value).startswith(problem)


def test_ssl_files_are_checked_when_the_consumer_starts_not_before(tmp_path: object) -> None:
    options = {"ssl.ca.location": "/nonexistent/ca.pem"}
    check_options(options)
    with pytest.raises(OSError):
        consumer_arguments(options)


def test_secrets_are_redacted() -> None:
    shown = redacted({"sasl.password": "hunter2", "ssl.key.password": "k", "client.id": "c"})
    assert shown == {"sasl.password": "***", "ssl.key.password": "***", "client.id": "c"}
