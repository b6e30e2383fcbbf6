"""Settings precedence: flags over environment over TOML file over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyrestate.config import ConfigError, Settings, load_settings


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pyrestate.toml"
    path.write_text(text)
    return path


def test_defaults_match_the_official_ports() -> None:
    s = load_settings({}, env={})
    assert s == Settings()
    assert (s.ingress_bind, s.admin_bind) == ("127.0.0.1:8080", "127.0.0.1:9070")
    assert s.data_dir == Path("pyrestate-data")


def test_official_names_are_honoured(tmp_path: Path) -> None:
    env = {
        "RESTATE_INGRESS__BIND_ADDRESS": "0.0.0.0:18080",
        "RESTATE_ADMIN__BIND_ADDRESS": "127.0.0.1:19070",
        "RESTATE_BASE_DIR": "/data/restate",
    }
    s = load_settings({}, env=env)
    assert (s.ingress_bind, s.admin_bind, s.data_dir) == (
        "0.0.0.0:18080",
        "127.0.0.1:19070",
        Path("/data/restate"),
    )
    official_toml = _toml(
        tmp_path,
        'base-dir = "/b"\n[ingress]\nbind-address = "127.0.0.1:1"\n'
        '[admin]\nbind-address = "127.0.0.1:2"\n',
    )
    s = load_settings({}, env={}, config_file=official_toml)
    assert (s.ingress_bind, s.admin_bind, s.data_dir) == ("127.0.0.1:1", "127.0.0.1:2", Path("/b"))


def test_flags_beat_env_which_beats_the_file(tmp_path: Path) -> None:
    config = _toml(tmp_path, '[ingress]\nbind = "127.0.0.1:1"\n[admin]\nbind = "127.0.0.1:2"\n')
    env = {"PYRESTATE_INGRESS_BIND": "127.0.0.1:3", "RESTATE_INGRESS__BIND_ADDRESS": "1.1.1.1:9"}
    s = load_settings({"admin_bind": "127.0.0.1:4"}, env=env, config_file=config)
    assert (s.ingress_bind, s.admin_bind) == ("127.0.0.1:3", "127.0.0.1:4")


def test_bad_values_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        load_settings({"ingress_bind": "localhost"}, env={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings({}, env={}, config_file=_toml(tmp_path, "not = [toml"))
    with pytest.raises(ConfigError, match="synchronous"):
        load_settings({}, env={"PYRESTATE_SQLITE_SYNCHRONOUS": "sometimes"})


def test_ingress_limits_come_from_toml_and_env(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("[ingress]\nmax-in-flight = 50\nheader-timeout = 2.5\n")
    settings = load_settings({}, env={}, config_file=toml)
    assert settings.ingress_max_in_flight == 50 and settings.ingress_header_timeout_s == 2.5
    env = {"PYRESTATE_INGRESS_MAX_IN_FLIGHT": "7"}
    assert load_settings({}, env=env, config_file=toml).ingress_max_in_flight == 7


@pytest.mark.parametrize("value", ["0", "-1", "many", "1e12"])
def test_ingress_limits_out_of_range_are_config_errors(value: str) -> None:
    with pytest.raises(ConfigError, match="ingress_max_in_flight"):
        load_settings({}, env={"PYRESTATE_INGRESS_MAX_IN_FLIGHT": value})


def test_pgsql_bind_has_the_official_default_port_and_names(tmp_path: Path) -> None:
    assert load_settings({}, env={}).pgsql_bind == "127.0.0.1:9071"
    official = {"RESTATE_ADMIN__QUERY_ENGINE__PGSQL_BIND_ADDRESS": "0.0.0.0:19071"}
    assert load_settings({}, env=official).pgsql_bind == "0.0.0.0:19071"
    own = {**official, "PYRESTATE_PGSQL_BIND": "127.0.0.1:29071"}
    assert load_settings({}, env=own).pgsql_bind == "127.0.0.1:29071"
    assert load_settings({"pgsql_bind": "127.0.0.1:1"}, env=own).pgsql_bind == "127.0.0.1:1"
    toml = _toml(tmp_path, '[admin.query-engine]\npgsql-bind-address = "127.0.0.1:3"\n')
    assert load_settings({}, env={}, config_file=toml).pgsql_bind == "127.0.0.1:3"
    with pytest.raises(ConfigError, match="HOST:PORT"):
        load_settings({}, env={"PYRESTATE_PGSQL_BIND": "9071"})


def test_asgi_import_is_off_unless_asked_for(tmp_path: Path) -> None:
    assert load_settings({}, env={}).asgi_import is False
    assert load_settings({}, env={"PYRESTATE_ASGI_IMPORT": "true"}).asgi_import is True
    toml = _toml(tmp_path, "asgi-import = true\n")
    assert load_settings({}, env={}, config_file=toml).asgi_import is True
    assert load_settings({"asgi_import": False}, env={}, config_file=toml).asgi_import is False
    with pytest.raises(ConfigError, match="asgi_import must be true or false"):
        load_settings({}, env={"PYRESTATE_ASGI_IMPORT": "maybe"})


def test_kafka_clusters_in_the_official_toml_and_env_forms(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        '[[ingress.kafka-clusters]]\nname = "one"\nbrokers = ["PLAINTEXT://h1:9092", "h2:9092"]\n'
        '"client.id" = "me"\n"session.timeout.ms" = 6000\n',
    )
    (one,) = load_settings({}, env={}, config_file=path).kafka_clusters
    assert one.name == "one" and one.static
    assert one.properties == {
        "metadata.broker.list": "PLAINTEXT://h1:9092,h2:9092",
        "client.id": "me",
        "session.timeout.ms": "6000",
    }
    assert one.brokers() == ["h1:9092", "h2:9092"]
    env = {"RESTATE_INGRESS__KAFKA_CLUSTERS": '[{name="two",brokers=["PLAINTEXT://h:1"]}]'}
    (two,) = load_settings({}, env=env, config_file=path).kafka_clusters
    assert two.name == "two", "the environment beats the file"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[{brokers=['h:1']}]", "has no name"),
        ("[{name='a'}]", "needs brokers"),
        ("[{name='a',brokers=['h:1']},{name='a',brokers=['h:2']}]", "used twice"),
        ("[{name='a',brokers=['h:1'],'foo.bar'='x'}]", "'foo.bar' is not supported"),
        ("[{name='a',brokers=['h:1'],'auto.offset.reset'='sideways'}]", "must be one of"),
        ("{name='a'}", "must be a list"),
        ("[{name=", "TOML array"),
    ],
)
def test_bad_kafka_clusters_name_the_problem(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_settings({}, env={"RESTATE_INGRESS__KAFKA_CLUSTERS": value})


def test_tracing_settings_have_the_official_names(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        'tracing-endpoint = "http://collector:4317"\n'
        '[tracing-headers]\nauthorization = "Bearer t"\n',
    )
    s = load_settings({}, env={}, config_file=path)
    assert s.tracing_endpoint == "http://collector:4317"
    assert s.tracing_headers == (("authorization", "Bearer t"),)
    env = {
        "RESTATE_TRACING_ENDPOINT": "http://general:4317",
        "RESTATE_TRACING_HEADERS__X_API_KEY": "k",
    }
    s = load_settings({}, env=env, config_file=path)
    assert s.tracing_endpoint == "http://general:4317", "the environment beats the file"
    assert dict(s.tracing_headers) == {"authorization": "Bearer t", "x-api-key": "k"}
    env["RESTATE_TRACING_SERVICES_ENDPOINT"] = "otlp+http://services:4318/v1/traces"
    s = load_settings({}, env=env)
    assert s.tracing_endpoint == "otlp+http://services:4318/v1/traces", "it wins, as officially"
    s = load_settings({"tracing_endpoint": "grpc://flag:4317"}, env=env)
    assert s.tracing_endpoint == "grpc://flag:4317"
    assert load_settings({}, env={}).tracing_endpoint is None


@pytest.mark.parametrize("endpoint", ["collector:4317", "foo://h:1"])
def test_a_tracing_endpoint_without_a_known_scheme_is_refused(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="use http://"):
        load_settings({}, env={"RESTATE_TRACING_ENDPOINT": endpoint})
