"""Server settings from flags, environment and a TOML file (in that order of precedence).

The official server's names work too, so scripts written for it keep working:
``RESTATE_INGRESS__BIND_ADDRESS``, ``RESTATE_ADMIN__BIND_ADDRESS``, ``RESTATE_BASE_DIR``,
``RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE``,
``RESTATE_ADMIN__QUERY_ENGINE__PGSQL_BIND_ADDRESS``, ``--base-dir``, and the TOML keys
``ingress.bind-address``, ``admin.bind-address``, ``admin.query-engine.pgsql-bind-address``,
``base-dir``, ``worker.invoker.request-identity-private-key-pem-file``, and Kafka
clusters as ``[[ingress.kafka-clusters]]`` tables or ``RESTATE_INGRESS__KAFKA_CLUSTERS``
(a TOML inline array of them).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pyrestate.subscriptions.kafka_options import KafkaOptionError, check_options
from pyrestate.subscriptions.model import KafkaCluster
from pyrestate.telemetry.trace_context import EndpointError, otlp_transport


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Settings:
    ingress_bind: str = "127.0.0.1:8080"
    admin_bind: str = "127.0.0.1:9070"
    # The PostgreSQL protocol over the SQL tables; loopback by default: it has no auth.
    pgsql_bind: str = "127.0.0.1:9071"
    data_dir: Path = Path("pyrestate-data")
    # FULL: fsync every commit (group commit amortises it); NORMAL: fsync at checkpoints.
    sqlite_synchronous: str = "FULL"
    # ed25519 key (PKCS#8 PEM) to sign every request to deployments; None: unsigned.
    request_identity_private_key_pem_file: Path | None = None
    # Ingress requests handled at once (waiting calls included); beyond them: 503.
    ingress_max_in_flight: int = 10_000
    # Seconds a client may take to send a request head (slowloris guard).
    ingress_header_timeout_s: float = 30.0
    # Let the admin API register asgi://module/app deployments by importing the module
    # into this process (in-process services); off: only apps `pyrestate run` mounted.
    asgi_import: bool = False
    # Kafka clusters subscriptions may read from (the official "static" clusters).
    kafka_clusters: tuple[KafkaCluster, ...] = ()
    # OTLP collector for traces (None: no tracing); the scheme picks gRPC or HTTP.
    tracing_endpoint: str | None = None
    # Headers sent with every export (e.g. an API key of a hosted collector).
    tracing_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # Besides the official spans, a child span per action a handler takes.
    tracing_journal_spans: bool = True


# Each setting: (pyrestate env, official envs and TOML paths in order of preference).
_SOURCES: dict[str, tuple[str, tuple[str, ...], tuple[tuple[str, ...], ...]]] = {
    "ingress_bind": (
        "PYRESTATE_INGRESS_BIND",
        ("RESTATE_INGRESS__BIND_ADDRESS",),
        (("ingress", "bind"), ("ingress", "bind-address")),
    ),
    "admin_bind": (
        "PYRESTATE_ADMIN_BIND",
        ("RESTATE_ADMIN__BIND_ADDRESS",),
        (("admin", "bind"), ("admin", "bind-address")),
    ),
    "pgsql_bind": (
        "PYRESTATE_PGSQL_BIND",
        ("RESTATE_ADMIN__QUERY_ENGINE__PGSQL_BIND_ADDRESS",),
        (("pgsql", "bind"), ("admin", "query-engine", "pgsql-bind-address")),
    ),
    "data_dir": ("PYRESTATE_DATA_DIR", ("RESTATE_BASE_DIR",), (("data-dir",), ("base-dir",))),
    "sqlite_synchronous": ("PYRESTATE_SQLITE_SYNCHRONOUS", (), (("sqlite", "synchronous"),)),
    "request_identity_private_key_pem_file": (
        "PYRESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE",
        ("RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE",),
        (
            ("request-identity-private-key-pem-file",),
            ("worker", "invoker", "request-identity-private-key-pem-file"),
        ),
    ),
    "ingress_max_in_flight": (
        "PYRESTATE_INGRESS_MAX_IN_FLIGHT",
        (),
        (("ingress", "max-in-flight"),),
    ),
    "ingress_header_timeout_s": (
        "PYRESTATE_INGRESS_HEADER_TIMEOUT",
        (),
        (("ingress", "header-timeout"),),
    ),
    "asgi_import": ("PYRESTATE_ASGI_IMPORT", (), (("asgi-import",),)),
    # The official server's services endpoint wins over its general one.
    "tracing_endpoint": (
        "PYRESTATE_TRACING_ENDPOINT",
        ("RESTATE_TRACING_SERVICES_ENDPOINT", "RESTATE_TRACING_ENDPOINT"),
        (("tracing-services-endpoint",), ("tracing-endpoint",)),
    ),
    "tracing_journal_spans": (
        "PYRESTATE_TRACING_JOURNAL_SPANS",
        (),
        (("tracing-journal-spans",),),
    ),
}
_PATHS = frozenset({"data_dir", "request_identity_private_key_pem_file"})
_FLAGS = frozenset({"asgi_import", "tracing_journal_spans"})
# Positive numbers, with the largest value that still makes sense.
_NUMBERS: dict[str, tuple[type[int] | type[float], float]] = {
    "ingress_max_in_flight": (int, 10_000_000),
    "ingress_header_timeout_s": (float, 86_400.0),
}


def _toml_value(doc: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def load_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    env = os.environ if env is None else env
    doc: dict[str, Any] = {}
    if config_file is not None:
        try:
            doc = tomllib.loads(config_file.read_text())
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config file {config_file}: {e}") from e
    settings = Settings()
    for name, (own_env, official_envs, toml_paths) in _SOURCES.items():
        value = flags.get(name)
        if value is None:
            value = next((env[e] for e in (own_env, *official_envs) if env.get(e)), None)
        if value is None:
            for path in toml_paths:
                value = _toml_value(doc, path)
                if value is not None:
                    break
        if value is None:
            continue
        if name in _PATHS:
            value = Path(value)
        elif name in _NUMBERS:
            value = _number(name, value)
        elif name in _FLAGS:
            value = _flag(name, value)
        elif name == "tracing_endpoint":
            value = str(value)
            try:
                otlp_transport(value)
            except EndpointError as e:
                raise ConfigError(str(e)) from None
        elif name == "sqlite_synchronous":
            value = str(value).upper()
            if value not in ("FULL", "NORMAL", "EXTRA"):
                raise ConfigError(f"sqlite synchronous must be FULL, NORMAL or EXTRA: {value}")
        else:
            value = str(value)
            split_bind(value)  # validate early, with the setting's name in the error
        settings = replace(settings, **{name: value})
    clusters = env.get(_KAFKA_ENV)
    if clusters is not None:
        try:
            listed = tomllib.loads(f"v = {clusters}")["v"]
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{_KAFKA_ENV} must be a TOML array of tables: {e}") from None
    else:
        listed = _toml_value(doc, ("ingress", "kafka-clusters"))
    if listed is not None:
        settings = replace(settings, kafka_clusters=_kafka_clusters(listed))
    headers = _tracing_headers(env, _toml_value(doc, ("tracing-headers",)))
    if headers:
        settings = replace(settings, tracing_headers=headers)
    return settings


def _tracing_headers(env: Mapping[str, str], table: Any) -> tuple[tuple[str, str], ...]:
    """``[tracing-headers]`` of the file, then ``RESTATE_TRACING_HEADERS__X_FOO=v`` (the
    header ``x-foo``) over it, as the official server reads them."""
    headers: dict[str, str] = {}
    if table is not None:
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise ConfigError("tracing-headers must be a table of header names to strings")
        headers.update({k.lower(): v for k, v in table.items()})
    prefix = "RESTATE_TRACING_HEADERS__"
    for key, value in env.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            headers[key[len(prefix) :].lower().replace("_", "-")] = value
    return tuple(headers.items())


_KAFKA_ENV = "RESTATE_INGRESS__KAFKA_CLUSTERS"
_MAX_CLUSTERS = 256


def _kafka_clusters(listed: Any) -> tuple[KafkaCluster, ...]:
    """``[{name = "x", brokers = ["PLAINTEXT://host:port"], <librdkafka property> = ...}]``;
    brokers become the property ``metadata.broker.list``, as the official shows them."""
    what = "ingress.kafka-clusters"
    if not isinstance(listed, list) or len(listed) > _MAX_CLUSTERS:
        raise ConfigError(f"{what} must be a list of at most {_MAX_CLUSTERS} tables")
    clusters: dict[str, KafkaCluster] = {}
    for entry in listed:
        if not isinstance(entry, dict):
            raise ConfigError(f"{what}: every cluster must be a table with name and brokers")
        name = entry.get("name")
        brokers = entry.get("brokers")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{what}: a cluster has no name")
        if name in clusters:
            raise ConfigError(f"{what}: the cluster name '{name}' is used twice")
        if (
            not isinstance(brokers, list)
            or not brokers
            or not all(isinstance(b, str) and b for b in brokers)
        ):
            raise ConfigError(f"{what}: cluster '{name}' needs brokers, a list of host:port")
        properties = {"metadata.broker.list": ",".join(brokers)}
        for key, value in entry.items():
            if key in ("name", "brokers"):
                continue
            if isinstance(value, dict | list):
                raise ConfigError(f"{what}: cluster '{name}': '{key}' must be a plain value")
            properties[key] = str(value).lower() if isinstance(value, bool) else str(value)
        try:
            check_options(properties)
        except KafkaOptionError as e:
            raise ConfigError(f"{what}: cluster '{name}': {e}") from None
        clusters[name] = KafkaCluster(name, properties, static=True)
    return tuple(clusters.values())


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false: {value!r}")


def _number(name: str, value: Any) -> int | float:
    kind, most = _NUMBERS[name]
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number: {value!r}") from None
    if not 0 < number <= most:
        raise ConfigError(f"{name} must be above 0 and at most {most:g}: {value!r}")
    return number


def split_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"bind address must be HOST:PORT, got {bind!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
