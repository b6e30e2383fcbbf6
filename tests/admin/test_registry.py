"""The pure registry model: rules, rendering, decoding, persistence.

Expected texts come from the official server 1.7.12 (the fixtures and the literal
messages below were captured from it), except those of JSON and manifest decoding
errors, which are pyrestate's own.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pyrestate.admin.errors import (
    AdminError,
    DeploymentNotFound,
    HandlerNotFound,
    ServiceNotFound,
)
from pyrestate.admin.ids import deployment_id_error, new_deployment_id
from pyrestate.admin.json_text import JsonError, parse_json
from pyrestate.admin.manifest import ManifestError, decode_manifest
from pyrestate.admin.model import (
    SUPPORTED_PROTOCOL_VERSIONS,
    DiscoveredEndpoint,
    negotiate_protocol_version,
    protocol_versions_acceptable,
)
from pyrestate.admin.registry import Registry
from pyrestate.admin.registry_store import (
    RegistryStore,
    RegistryStoreError,
    registry_document,
    registry_from_document,
)
from pyrestate.admin.render import render_service
from pyrestate.admin.schema_rules import build_service
from pyrestate.official_format import format_duration

FIXTURES = Path(__file__).parent / "fixtures"
MANIFESTS: dict[str, Any] = json.loads((FIXTURES / "manifests.json").read_text())
SDK_MANIFEST: dict[str, Any] = json.loads((FIXTURES / "sdk_manifest.json").read_text())


def discovered(*services: dict[str, Any], lo: int = 5, hi: int = 6, rr: bool = False) -> Any:
    return DiscoveredEndpoint(
        protocol_type="RequestResponse" if rr else "BidiStream",
        http_version="HTTP/2.0",
        min_protocol_version=lo,
        max_protocol_version=hi,
        services=tuple(services),
        sdk_version="test/1",
    )


def svc(name: str, ty: str = "SERVICE", handlers: list[dict[str, Any]] | None = None) -> Any:
    return {"name": name, "ty": ty, "handlers": handlers or [{"name": "h"}]}


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return new_deployment_id(1_700_000_000_000 + self.n, self.n)


def register(
    reg: Registry, uri: str, *services: dict[str, Any], ids: Ids, **kw: Any
) -> tuple[str, Registry, Any]:
    return reg.add_deployment(
        uri=uri, discovered=discovered(*services), new_id=ids(), now_ms=ids.n, **kw
    )


# --- registration rules


def test_revisions_follow_the_latest_registration() -> None:
    ids = Ids()
    result, r1, d1 = register(Registry(), "http://a:1", svc("S"), svc("T"), ids=ids)
    assert result == "Created"
    assert r1.service("S").revision == 1 and r1.service("S").deployment_id == d1.id
    result, r2, d2 = register(r1, "http://b:1/", svc("S"), ids=ids)
    assert result == "Created" and d2.id != d1.id
    assert r2.service("S").revision == 2 and r2.service("S").deployment_id == d2.id
    assert r2.service("T").deployment_id == d1.id
    # The old deployment keeps serving its own revision.
    assert r2.deployment(d1.id).services["S"].revision == 1
    # Removing the latest falls back to the previous revision.
    r3 = r2.remove_deployment(d2.id)
    assert r3.service("S").revision == 1 and r3.service("S").deployment_id == d1.id
    assert r3.version == r2.version + 1
    with pytest.raises(DeploymentNotFound):
        r3.remove_deployment(d2.id)


def test_same_endpoint_is_unchanged_unless_forced() -> None:
    ids = Ids()
    _, r1, d1 = register(Registry(), "http://a:1", svc("S"), ids=ids)
    # Scheme and trailing slash of an empty path do not make a different endpoint.
    for uri in ("http://a:1/", "https://A:1", "http://a:1"):
        assert r1.find_deployment(uri) is d1
    assert r1.find_deployment("http://a:1/other") is None
    result, r2, d2 = register(r1, "http://a:1/", svc("S"), svc("New"), ids=ids)
    assert (result, r2, d2) == ("Unchanged", r1, d1)
    result, r3, d3 = register(r1, "http://a:1/", svc("New"), ids=ids, overwrite=True)
    assert result == "Overwritten" and d3.id == d1.id
    assert r3.service("New").revision == 1
    # S is gone with the overwrite: no other deployment has it.
    with pytest.raises(ServiceNotFound):
        r3.service("S")
    assert list(r3.deployments) == [d1.id]


def test_overwrite_bumps_revision_past_other_deployments() -> None:
    ids = Ids()
    _, r, d1 = register(Registry(), "http://a:1", svc("S"), ids=ids)
    _, r, _ = register(r, "http://b:1", svc("S"), ids=ids)
    _, r, d3 = register(r, "http://a:1", svc("S"), ids=ids, overwrite=True)
    assert d3.id == d1.id and r.service("S").revision == 3
    assert r.service("S").deployment_id == d1.id


def test_type_change_needs_breaking() -> None:
    ids = Ids()
    _, r, _ = register(Registry(), "http://a:1", svc("S"), ids=ids)
    with pytest.raises(AdminError) as e:
        register(r, "http://b:1", svc("S", "VIRTUAL_OBJECT"), ids=ids)
    assert (e.value.status, e.value.restate_code) == (409, "META0006")
    assert e.value.message == (
        "[META0006] detected a new service revision for 'S' changing the service type from "
        "previous revision. Service type cannot be changed across revisions."
    )
    _, r2, _ = register(r, "http://b:1", svc("S", "VIRTUAL_OBJECT"), ids=ids, allow_breaking=True)
    assert r2.service("S").ty == "VirtualObject" and r2.service("S").revision == 2


@pytest.mark.parametrize(
    ("manifest", "status", "message"),
    [
        (
            svc("restateX"),
            400,
            "[META0005] cannot insert/modify service 'restateX' as it contains a reserved name",
        ),
        (
            svc("S", "SERVICE", [{"name": "h", "ty": "EXCLUSIVE"}]),
            400,
            "invalid combination of service type and handler type '(Service, Some(Exclusive))'",
        ),
        (
            svc("S", "VIRTUAL_OBJECT", [{"name": "h", "ty": "WORKFLOW"}]),
            400,
            "invalid combination of service type and handler type "
            "'(VirtualObject, Some(Workflow))'",
        ),
        (
            svc("S", "SERVICE", [{"name": "h", "workflowCompletionRetention": 1}]),
            400,
            "h sets the workflow_completion_retention, but it's not a WORKFLOW handler",
        ),
    ],
)
def test_schema_violations(manifest: dict[str, Any], status: int, message: str) -> None:
    with pytest.raises(AdminError) as e:
        register(Registry(), "http://a:1", manifest, ids=Ids())
    assert (e.value.status, e.value.message) == (status, message)


def test_lookups_raise_the_ingress_messages() -> None:
    _, r, d = register(Registry(), "http://a:1", svc("Greeter"), ids=Ids())
    with pytest.raises(ServiceNotFound) as e1:
        r.resolve("Nope", "x")
    assert str(e1.value) == (
        "service 'Nope' not found, make sure to register the service before calling it."
    )
    with pytest.raises(HandlerNotFound) as e2:
        r.resolve("Greeter", "nope")
    assert str(e2.value) == (
        "the service 'Greeter' exists, but the handler 'nope' was not found, check that the "
        "handler exists in the latest registered service version."
    )
    assert isinstance(e1.value, LookupError) and isinstance(e2.value, LookupError)
    service, handler = r.resolve("Greeter", "h")
    assert (service.name, handler.name, service.deployment_id) == ("Greeter", "h", d.id)
    assert r.deployment(d.id).services["Greeter"] == service
    with pytest.raises(DeploymentNotFound):
        r.deployment("dp_1xx")


# --- protocol versions


def test_protocol_version_negotiation() -> None:
    lo, hi = SUPPORTED_PROTOCOL_VERSIONS[0], SUPPORTED_PROTOCOL_VERSIONS[-1]
    assert (lo, hi) >= (5, 6)
    assert negotiate_protocol_version(5, 9) == hi
    assert negotiate_protocol_version(5, 5) == 5
    assert negotiate_protocol_version(3, 6) == 6
    assert protocol_versions_acceptable(3, 5)
    assert protocol_versions_acceptable(hi, 9)
    assert not protocol_versions_acceptable(1, lo - 1)
    assert not protocol_versions_acceptable(hi + 1, hi + 1)
    _, _, d = register(Registry(), "http://a:1", svc("S"), ids=Ids())
    assert d.protocol_version == 6


# --- handler input validation (what the official ingress answered)


def _sdk_and_fake_registry() -> Registry:
    services = decode_manifest(json.dumps(SDK_MANIFEST).encode())["services"]
    services += decode_manifest(json.dumps(MANIFESTS["inputs"]["manifest"]).encode())["services"]
    _, r, _ = Registry().add_deployment(
        uri="http://a:1", discovered=discovered(*services), new_id=Ids()(), now_ms=1
    )
    return r


def test_input_validation_matches_official() -> None:
    registry = _sdk_and_fake_registry()
    cases = json.loads((FIXTURES / "input_validation.json").read_text())
    for case in cases:
        _, handler = registry.resolve(case["service"], case["handler"])
        got = handler.check_input(case["content_type"], case["body"].encode())
        expected = None if case["status"] == 202 else case["message"]
        assert got == expected, case


def test_output_content_type() -> None:
    registry = _sdk_and_fake_registry()
    greet = registry.resolve("Greeter", "greet")[1]
    assert greet.output_content_type(False) == "application/json"
    assert greet.output_content_type(True) is None  # setContentTypeIfEmpty is false
    assert registry.resolve("ReqIn", "titled")[1].output_content_type(True) is not None
    assert registry.resolve("ReqIn", "none")[1].output_content_type(False) is None


# --- effective settings for the engine


def test_invocation_options_merge_handler_service_defaults() -> None:
    services = decode_manifest(json.dumps(SDK_MANIFEST).encode())["services"]
    _, r, _ = Registry().add_deployment(
        uri="http://a:1", discovered=discovered(*services), new_id=Ids()(), now_ms=1
    )
    opts = r.service("Opts")
    assert (opts.effective_inactivity_timeout_ms, opts.effective_abort_timeout_ms) == (
        90_000,
        125_250,
    )
    assert (opts.effective_idempotency_retention_ms, opts.effective_journal_retention_ms) == (
        3 * 86_400_000,
        36 * 3_600_000,
    )
    p = opts.retry_policy
    assert (p.initial_interval_s, p.exponentiation_factor, p.max_attempts) == (0.25, 1.5, 10)
    assert (p.max_interval_s, p.on_max_attempts) == (30.0, "Kill")
    tuned = opts.handler_options("tuned")
    assert not tuned.public
    assert (tuned.inactivity_timeout_s, tuned.abort_timeout_s) == (5.0, 7.0)
    assert (tuned.completion_retention_s, tuned.journal_retention_s) == (7200.0, 600.0)
    assert tuned.retry_policy.max_attempts == 3
    assert tuned.retry_policy.on_max_attempts == "Pause"
    assert tuned.retry_policy.initial_interval_s == 0.25  # from the service
    greeter = r.service("Greeter")
    assert (greeter.effective_inactivity_timeout_ms, greeter.effective_abort_timeout_ms) == (
        60_000,
        600_000,
    )
    g = greeter.handler_options("greet")
    assert (g.inactivity_timeout_s, g.abort_timeout_s) == (None, None)  # invoker defaults
    assert g.retry_policy.max_attempts == 70 and g.retry_policy.max_interval_s == 60.0
    wf = r.service("WfOpts")
    assert wf.effective_workflow_completion_retention_ms == 2 * 86_400_000
    run2 = wf.handler_options("run2")
    assert run2.completion_retention_s == 2 * 86400.0 and run2.journal_retention_s == 3600.0
    assert run2.enable_lazy_state
    assert r.service("Greeter").effective_workflow_completion_retention_ms is None


# --- rendering details


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0s"),
        (1, "1ms"),
        (500, "500ms"),
        (60_000, "1m"),
        (90_000, "1m 30s"),
        (125_250, "2m 5s 250ms"),
        (129_600_000, "1d 12h"),
        (90_061_001, "1d 1h 1m 1s 1ms"),
        (400 * 86_400_000, "400d"),
    ],
)
def test_durations_print_like_official(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_render_matches_official_service() -> None:
    scenario = json.loads((FIXTURES / "scenario.json").read_text())
    expected = next(s for s in scenario if s["name"] == "get_service_opts")["expect"]["json"]
    services = decode_manifest(json.dumps(SDK_MANIFEST).encode())["services"]
    opts = build_service(next(s for s in services if s["name"] == "Opts"), "{dp#1}", 1)
    got = render_service(opts, "BidiStream")
    got["handlers"].sort(key=lambda h: h["name"])
    assert got == expected


# --- ids


def test_deployment_ids() -> None:
    # An id the official server generated, rebuilt from its timestamp and random bits.
    official = "dp_14F0ex0wY4ER8MsBVEST8yZ"
    raw = bytes.fromhex("01a201cb8d64a6467a689ab6e0472899")
    ts = int.from_bytes(raw[:6], "big")
    assert new_deployment_id(ts, int.from_bytes(raw[6:], "big")) == official
    assert deployment_id_error(official) is None
    assert deployment_id_error(new_deployment_id(0, 0)) is None
    assert len(new_deployment_id(2**48 - 1, 2**80 - 1)) == 26


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "bad length"),
        ("garbage", "bad format"),
        ("dp_nope", "unrecognized codec version"),
        ("inv_1abc", "id doesn't match the expected type"),
        ("xx_1abc", "unrecognized resource type: xx"),
        ("dp_1abc", "bad length"),
        ("dp_14F0ex0wY4ER8MsBVEST8yZZ", "bad length"),
        ("dp_14F0ex0wY4ER8MsBVEST8y!", "base62 decode error"),
        ("dp_1zzzzzzzzzzzzzzzzzzzzzz", "base62 decode error"),
    ],
)
def test_deployment_id_errors(text: str, reason: str) -> None:
    assert deployment_id_error(text) == reason


# --- JSON parsing: what is wrong and where


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "Expecting value: line 1 column 1"),
        (b"garbage", "Expecting value: line 1 column 1"),
        (b'{"a":1,', "Expecting property name enclosed in double quotes: line 1 column 8"),
        (b'{"a" 1}', "Expecting ':' delimiter: line 1 column 6"),
        (b"[1 2]", "Expecting ',' delimiter: line 1 column 4"),
        (b'"abc', "Unterminated string starting at: line 1 column 1"),
        (b'\n\n  "a\tb"', "Invalid control character at: line 3 column 5"),
        (b'{"a":1}  x', "trailing characters: line 1 column 10"),
        (b"[NaN]", "NaN is not a JSON value"),
        (b"-Infinity", "-Infinity is not a JSON value"),
        (b'"\\ud800"', "lone surrogate in a \\u escape"),
        (b'"\xff"', "'utf-8' codec can't decode byte 0xff in position 1: invalid start byte"),
    ],
)
def test_json_errors(text: bytes, message: str) -> None:
    with pytest.raises(JsonError) as e:
        parse_json(text)
    assert str(e.value) == message


def test_json_nesting_too_deep_is_a_json_error() -> None:
    with pytest.raises(JsonError, match="recursion"):
        parse_json(b"[" * 100_000)


def test_json_values() -> None:
    assert parse_json(b' {"a": [1, -2, 1.5, true, null, "x\\u00e9\\n"]} ') == {
        "a": [1, -2, 1.5, True, None, "x\u00e9\n"]
    }
    assert parse_json('"\U0001f600"'.encode()) == "\U0001f600"
    assert parse_json(b'"\\ud83d\\ude00"') == "\U0001f600"


# --- manifest decoding: which field is wrong, as a JSON path


def manifest(*services: Any, **top: Any) -> bytes:
    doc = {"minProtocolVersion": 5, "maxProtocolVersion": 6, "services": list(services)}
    return json.dumps({**doc, **top}).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1,", "Expecting value: line 1 column 4"),
        (b'{"services": []} x', "trailing characters: line 1 column 18"),
        (b"[]", "invalid type: an array, expected an object at $"),
        (
            manifest(svc("S", handlers=[{"name": "h"}, {"name": "h2", "ty": 1}])),
            "unknown variant 1, expected one of `WORKFLOW`, `EXCLUSIVE`, `SHARED` "
            "at $.services[0].handlers[1].ty",
        ),
        (manifest({"name": "S", "ty": "SERVICE"}), "missing field `handlers` at $.services[0]"),
        (
            manifest(svc("S", handlers=[{"name": "h", "abortTimeout": True}])),
            "invalid type: true, expected u64 at $.services[0].handlers[0].abortTimeout",
        ),
        (
            manifest(svc("S", handlers=[{"name": "h", "journalRetention": 2**64}])),
            f"invalid value: {2**64}, expected u64 at $.services[0].handlers[0].journalRetention",
        ),
        (
            manifest(minProtocolVersion=0),
            "invalid value: 0, expected a nonzero u64 at $.minProtocolVersion",
        ),
        (
            manifest(svc("S", handlers=[{"name": "h", "metadata": {"k": 1}}])),
            "invalid type: 1, expected a string at $.services[0].handlers[0].metadata.k",
        ),
        (
            manifest(svc("S", handlers=[{"name": "h", "input": {"required": "yes"}}])),
            'invalid type: "yes", expected a boolean at $.services[0].handlers[0].input.required',
        ),
        (
            b'{"services": [{"name": "S", "ty": "SERVICE", "handlers": [], "name": "T"}]}',
            "duplicate field `name` at $.services[0]",
        ),
        (
            manifest(svc("S"), protocolMode=None, services=None),
            "invalid type: null, expected an array at $.services",
        ),
    ],
)
def test_manifest_errors(data: bytes, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        decode_manifest(data)
    assert str(e.value) == message


def test_manifest_optional_nulls_are_absent() -> None:
    handler = {"name": "h", "ty": None, "input": None, "documentation": None}
    decoded = decode_manifest(manifest(svc("S", handlers=[handler]), protocolMode=None))
    assert decoded["services"][0]["handlers"] == [{"name": "h"}]
    assert "protocolMode" not in decoded
    # Inside a JSON schema anything goes, repeated keys too (the last one stands).
    data = manifest(svc("S", handlers=[{"name": "h", "input": {"jsonSchema": {}}}]))
    data = data.replace(b'"jsonSchema": {}', b'"jsonSchema": {"type": "x", "type": "string"}')
    decoded = decode_manifest(data)
    assert decoded["services"][0]["handlers"][0]["input"] == {"jsonSchema": {"type": "string"}}


# --- persistence


def test_json_document_roundtrip() -> None:
    services = decode_manifest(json.dumps(SDK_MANIFEST).encode())["services"]
    services += decode_manifest(json.dumps(MANIFESTS["inputs"]["manifest"]).encode())["services"]
    ids = Ids()
    _, r, d = Registry().add_deployment(
        uri="http://a:1",
        discovered=discovered(*services),
        new_id=ids(),
        now_ms=5,
        additional_headers={"X-A": "b"},
        metadata={"m": "n"},
    )
    _, r, _ = register(r, "http://b:2/x", svc("Greeter"), ids=ids)
    doc = json.loads(json.dumps(registry_document(r)))
    back = registry_from_document(doc)
    assert registry_document(back) == registry_document(r)
    assert back.version == r.version
    for s in r.services():
        assert render_service(back.service(s.name), "BidiStream") == render_service(s, "BidiStream")
    assert back.deployment(d.id).additional_headers == {"x-a": "b"}
    assert back.resolve("ReqIn", "ct")[1].check_input("text/plain", b"") is None


async def test_registry_store(tmp_path: Path) -> None:
    store = RegistryStore(tmp_path / "data" / "metadata.db")
    empty = store.load()
    assert not empty.deployments and empty.version == 0
    _, r1, _ = register(empty, "http://a:1", svc("S"), ids=Ids())
    await store.save(r1)
    loaded = RegistryStore(tmp_path / "data" / "metadata.db").load()
    assert registry_document(loaded) == registry_document(r1)
    r2 = r1.remove_deployment(next(iter(r1.deployments)))
    await store.save(r2)
    assert not store.load().deployments and store.load().version == r2.version
    with pytest.raises(RegistryStoreError):
        await store.save(r1)  # older than what is stored
    with sqlite3.connect(tmp_path / "data" / "metadata.db") as conn:
        assert conn.execute("SELECT count(*) FROM registry").fetchone() == (1,)


def test_an_operator_modifies_a_services_settings() -> None:
    ids = Ids()
    handlers = [{"name": "run", "ty": "WORKFLOW"}, {"name": "get", "ty": "SHARED"}]
    _, reg, _ = register(Registry(), "http://a:1", svc("Wf", "WORKFLOW", handlers), ids=ids)
    _, reg, _ = register(
        reg, "http://b:1", svc("S", handlers=[{"name": "h", "ingressPrivate": False}]), ids=ids
    )
    changed = reg.modify_service(
        "Wf",
        public=False,
        idempotency_retention_ms=2_000,
        workflow_completion_retention_ms=3_000,
        journal_retention_ms=60_000,
        inactivity_timeout_ms=5_000,
    )
    wf = changed.service("Wf")
    assert changed.version == reg.version + 1 and wf.revision == reg.service("Wf").revision
    assert not wf.public and not any(h.public for h in wf.handlers.values())
    run = wf.handler_options("run")
    # The journal is kept no longer than the workflow.
    assert (run.completion_retention_s, run.journal_retention_s) == (3.0, 3.0)
    assert wf.handler_options("get").completion_retention_s == 2.0
    assert wf.effective_inactivity_timeout_ms == 5_000
    # A handler's own setting stays; the other service is untouched.
    s = changed.modify_service("S", public=False).service("S")
    assert s.handlers["h"].public and not s.public
    assert changed.service("S") == reg.service("S")
    with pytest.raises(AdminError):
        changed.modify_service("S", workflow_completion_retention_ms=1)
    with pytest.raises(ServiceNotFound):
        changed.modify_service("Nope", public=True)
