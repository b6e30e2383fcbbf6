"""The admin API against what the official server 1.7.12 answered.

``fixtures/scenario.json`` was recorded from the official server: a sequence of admin
requests (registrations of real Python-SDK deployments and of a fake deployment serving
the manifests in ``fixtures/manifests.json``, lookups, deletions, bad requests) with the
status, headers and bodies it returned. Here the same sequence runs against pyrestate's
`AdminApp`, with the same deployments served by hypercorn in a background thread, and the
answers must be equal modulo ids, timestamps, ports, list order and the wording of JSON
decoding errors (see `DECODER_MESSAGES`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import restate
from app_servers import Servers, free_port
from restate.retry_policy import InvocationRetryPolicy

from pyrestate.admin.app import AdminApp
from pyrestate.admin.discovery import discover
from pyrestate.admin.model import SUPPORTED_PROTOCOL_VERSIONS
from pyrestate.admin.registry import Registry
from pyrestate.admin.registry_store import RegistryStore, registry_document
from pyrestate.admin.web import Request, json_response

FIXTURES = Path(__file__).parent / "fixtures"

# --- the SDK deployments the scenario registers (same code as when it was recorded)

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return "hi " + name


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, n: int) -> int:
    return n


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return 0


signup = restate.Workflow("Signup")


@signup.main()
async def run(ctx: restate.WorkflowContext, email: str) -> bool:
    return True


@signup.handler()
async def click(ctx: restate.WorkflowSharedContext, secret: str) -> None:
    return None


opts = restate.Service(
    "Opts",
    description="Service docs",
    metadata={"team": "a"},
    inactivity_timeout=timedelta(seconds=90),
    abort_timeout=timedelta(minutes=2, seconds=5, milliseconds=250),
    journal_retention=timedelta(hours=36),
    idempotency_retention=timedelta(days=3),
    invocation_retry_policy=InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=250),
        exponentiation_factor=1.5,
        max_interval=timedelta(seconds=30),
        max_attempts=10,
        on_max_attempts="kill",
    ),
)


@opts.handler(
    metadata={"h": "1"},
    inactivity_timeout=timedelta(seconds=5),
    abort_timeout=timedelta(seconds=7),
    journal_retention=timedelta(minutes=10),
    idempotency_retention=timedelta(hours=2),
    ingress_private=True,
    invocation_retry_policy=InvocationRetryPolicy(max_attempts=3, on_max_attempts="pause"),
)
async def tuned(ctx: restate.Context, x: dict) -> list:
    """Handler docs."""
    return []


@opts.handler(
    accept="text/*",
    content_type="text/plain",
    input_serde=restate.serde.BytesSerde(),
    output_serde=restate.serde.BytesSerde(),
)
async def raw(ctx: restate.Context, x: bytes) -> bytes:
    return x


@opts.handler()
async def noinput(ctx: restate.Context) -> None:
    return None


@opts.handler()
async def untyped(ctx: restate.Context, x):  # type: ignore[no-untyped-def]
    return x


priv = restate.VirtualObject("PrivObj", ingress_private=True, enable_lazy_state=True)


@priv.handler(kind="shared", enable_lazy_state=False)
async def peek(ctx: restate.ObjectSharedContext) -> str:
    return ""


wf_opts = restate.Workflow("WfOpts", enable_lazy_state=True)


@wf_opts.main(workflow_retention=timedelta(days=2), journal_retention=timedelta(hours=1))
async def run2(ctx: restate.WorkflowContext) -> None:
    return None


SDK_APP = restate.app([greeter, counter, signup, opts, priv, wf_opts])
SDK_RR_APP = restate.app([greeter, counter], protocol="request_response")
SDK_SMALL_APP = restate.app([greeter])


# --- a fake deployment answering /{case}/discover with a recorded manifest


class FakeDeployment:
    def __init__(self, cases: dict[str, Any]) -> None:
        self.cases = dict(cases)
        self.requests: list[tuple[str, str, list[tuple[str, str]]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        headers = [(k.decode(), v.decode()) for k, v in scope["headers"]]
        self.requests.append((scope["path"], scope["http_version"], headers))
        parts = [p for p in scope["path"].split("/") if p]
        case = self.cases.get(parts[0]) if parts else None
        if case is None or parts[-1] != "discover":
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": b"not found"})
            return
        body = case.get("raw")
        if body is None:
            body = json.dumps(case["manifest"])
        ct = case.get("ct", "application/vnd.restate.endpointmanifest.v4+json")
        out = [] if ct == "" else [(b"content-type", ct.encode())]
        server = case.get("server", "restate-sdk-fake/1.0")
        if server:
            out.append((b"x-restate-server", server.encode()))
        await send(
            {"type": "http.response.start", "status": case.get("status", 200), "headers": out}
        )
        await send({"type": "http.response.body", "body": body.encode()})


@pytest.fixture(scope="module")
def deployments() -> Iterator[tuple[dict[str, int], FakeDeployment]]:
    fake = FakeDeployment(json.loads((FIXTURES / "manifests.json").read_text()))
    servers = Servers(
        {"sdk": SDK_APP, "sdk_rr": SDK_RR_APP, "sdk_small": SDK_SMALL_APP, "fake": fake}
    )
    ports = dict(servers.ports)
    ports["dead"] = free_port()
    try:
        yield ports, fake
    finally:
        servers.close()


class Holder:
    def __init__(self, registry: Registry) -> None:
        self.current = registry


def fast_discover() -> Any:
    # The official backs off for about 1.5 s in total; the behaviour, not the wait, matters.
    return functools.partial(discover, retry_delays=(0.001,) * 4)


def make_app(tmp_path: Path, **kwargs: Any) -> tuple[AdminApp, Holder, RegistryStore]:
    store = RegistryStore(tmp_path / "metadata.db")
    holder = Holder(store.load())
    app = AdminApp(
        holder,
        save=store.save,
        ingress_url="http://127.0.0.1:8080/",
        discover=fast_discover(),
        **kwargs,
    )
    return app, holder, store


# --- normalization (the same as when the fixtures were recorded)


class Normalizer:
    def __init__(self, ports: dict[str, int]) -> None:
        self.ports = ports
        self.ids: dict[str, str] = {}

    def text(self, s: str) -> str:
        for name, port in self.ports.items():
            s = s.replace(f"127.0.0.1:{port}", "{" + name + "}")
        s = re.sub(r'"date": "[^"]*"', '"date": "<date>"', s)

        def placeholder(m: re.Match[str]) -> str:
            value = m.group(0)
            if value not in self.ids:
                self.ids[value] = f"{{dp#{len(self.ids) + 1}}}"
            return self.ids[value]

        return re.sub(r"dp_1[0-9A-Za-z]{22}", placeholder, s)

    def json(self, v: Any, key: str | None = None) -> Any:
        if isinstance(v, dict):
            return {k: ("<ts>" if k == "created_at" else self.json(x, k)) for k, x in v.items()}
        if isinstance(v, list):
            out = [self.json(x) for x in v]
            if out and all(isinstance(x, dict) for x in out):
                if key == "deployments":
                    out.sort(key=lambda d: (d.get("uri", ""), d.get("id", "")))
                elif all("name" in x for x in out):
                    out.sort(key=lambda d: d["name"])
            return out
        if isinstance(v, str):
            return self.text(v)
        return v

    def substitute(self, s: str) -> str:
        for name, port in self.ports.items():
            s = s.replace("{" + name + "}", f"127.0.0.1:{port}")
        for real, ph in self.ids.items():
            s = s.replace(ph, real)
        return s


def known_deviations(v: Any) -> Any:
    """What pyrestate answers differently on purpose."""
    if isinstance(v, dict):
        return {k: known_deviations(x) for k, x in v.items()}
    if isinstance(v, list):
        return [known_deviations(x) for x in v]
    if isinstance(v, str):
        lo, hi = SUPPORTED_PROTOCOL_VERSIONS[0], SUPPORTED_PROTOCOL_VERSIONS[-1]
        # The official speaks service protocol up to v7; pyrestate says what it speaks.
        return v.replace("runtime are [5, 7]", f"runtime are [{lo}, {hi}]")
    return v


# Where the official text quotes its JSON decoder (serde_json, with line and column),
# pyrestate's decoder words it differently and points into manifests by JSON path. There
# the answer must be the same but for the decoder's message, which must name the problem
# (all of these words) and where it is.
DECODER_MESSAGES: dict[str, tuple[str, ...]] = {
    "fake_garbage": ("Expecting property name", "line 1 column 2"),
    "fake_badname": ('"1bad"', "doesn't match pattern", "$.services[0].name"),
    "fake_hname": ('"a.b"', "doesn't match pattern", "$.services[0].handlers[0].name"),
    "fake_missingfield": ("missing field `services`", "at $"),
    "fake_unknownfield": ("unknown field `weird`", "$.services[0].handlers[0]"),
    "fake_extratop": ("unknown field `extra`", "at $"),
    "fake_multiline": ("unknown field `bogus`", "$.services[0]"),
    "fake_badenum": ('unknown variant "THING"', "$.services[0].ty"),
    "fake_negdur": ("-5", "expected u64", "$.services[0].handlers[0].inactivityTimeout"),
    "fake_floatdur": ("1.5", "expected u64", "$.services[0].handlers[0].inactivityTimeout"),
    "fake_nulls": ("null", "expected a map", "$.services[0].handlers[0].metadata"),
    "fake_dupkey": ("duplicate field `minProtocolVersion`", "at $"),
    "fake_trailing": ("trailing characters", "line 1 column 68"),
    "bad_json": ("Expecting value", "line 1 column 1"),
    "empty_body": ("Expecting value", "line 1 column 1"),
    "trailing_comma": ("Expecting property name", "line 1 column "),
    "trailing_garbage": ("trailing characters", "line 1 column "),
}
_DECODER_MESSAGE = re.compile(
    r"(.*?(?:cannot be decoded|as JSON): )(.*?)((?:\. Discovery response: .*)?)", re.DOTALL
)


def same_but_decoder_message(expected: Any, got: Any, words: tuple[str, ...]) -> bool:
    def split(answer: dict[str, Any]) -> tuple[dict[str, Any], re.Match[str] | None]:
        answer = json.loads(json.dumps(answer))
        holder, key = (answer["json"], "message") if "json" in answer else (answer, "text")
        match = _DECODER_MESSAGE.fullmatch(holder[key])
        holder[key] = None
        return answer, match

    (expected_rest, e), (got_rest, g) = split(expected), split(got)
    return (
        expected_rest == got_rest
        and e is not None
        and g is not None
        and (e[1], e[3]) == (g[1], g[3])
        and all(word in g[2] for word in words)
    )


async def replay(
    client: httpx.AsyncClient, fake: FakeDeployment, ports: dict[str, int]
) -> list[str]:
    steps = json.loads((FIXTURES / "scenario.json").read_text())
    assert set(DECODER_MESSAGES) <= {step["name"] for step in steps}
    manifests = json.loads((FIXTURES / "manifests.json").read_text())
    norm = Normalizer(ports)
    problems = []
    for step in steps:
        if step.get("action") == "serve":
            fake.cases[step["case"]] = manifests[step["source"]]
            continue
        body = step.get("body")
        content = None
        if body is not None:
            content = norm.substitute(body if isinstance(body, str) else json.dumps(body)).encode()
        r = await client.request(
            step["method"],
            norm.substitute(step["path"]),
            content=content,
            headers=step.get("headers", {}),
        )
        got: dict[str, Any] = {"status": r.status_code}
        got["headers"] = {
            k: norm.text(r.headers[k])
            for k in ("content-type", "location", "allow")
            if k in r.headers
        }
        if r.headers.get("content-type") == "application/json" and r.content:
            got["json"] = norm.json(r.json())
        else:
            got["text"] = norm.text(r.text)
        expected = known_deviations(step["expect"])
        words = DECODER_MESSAGES.get(step["name"])
        if words is not None and same_but_decoder_message(expected, got, words):
            continue
        if got != expected:
            problems.append(
                f"{step['name']}:\n  expected {json.dumps(expected)[:1500]}\n"
                f"  got      {json.dumps(got)[:1500]}"
            )
    return problems


async def test_scenario_matches_official(
    tmp_path: Path, deployments: tuple[dict[str, int], FakeDeployment]
) -> None:
    ports, fake = deployments
    app, holder, store = make_app(tmp_path)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        problems = await replay(client, fake, ports)
    assert not problems, "\n".join(problems[:8]) + f"\n({len(problems)} steps differ)"
    # What was answered is what was stored.
    reloaded = store.load()
    assert registry_document(reloaded) == registry_document(holder.current)
    assert reloaded.version == holder.current.version


async def test_registration_is_saved_before_the_answer(
    tmp_path: Path, deployments: tuple[dict[str, int], FakeDeployment]
) -> None:
    ports, _ = deployments
    holder = Holder(Registry())
    saved: list[Registry] = []

    async def save(registry: Registry) -> None:
        # The answer must not be out yet, nor the new registry visible.
        assert holder.current is not registry
        saved.append(registry)

    app = AdminApp(holder, save=save, discover=fast_discover())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        r = await c.post("/deployments", json={"uri": f"http://127.0.0.1:{ports['sdk_small']}"})
        assert r.status_code == 201
        assert len(saved) == 1 and holder.current is saved[0]
        assert holder.current.service("Greeter").revision == 1
        # Dry runs and unchanged re-registrations save nothing.
        r = await c.post("/deployments", json={"uri": f"http://127.0.0.1:{ports['sdk_small']}"})
        assert r.status_code == 200
        r = await c.post(
            "/deployments", json={"uri": f"http://127.0.0.1:{ports['sdk']}", "dry_run": True}
        )
        assert r.status_code == 201
        assert len(saved) == 1


async def test_failed_save_changes_nothing(
    tmp_path: Path, deployments: tuple[dict[str, int], FakeDeployment]
) -> None:
    ports, _ = deployments
    holder = Holder(Registry())

    async def save(registry: Registry) -> None:
        raise OSError("disk full")

    app = AdminApp(holder, save=save, discover=fast_discover())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        r = await c.post("/deployments", json={"uri": f"http://127.0.0.1:{ports['sdk_small']}"})
    assert r.status_code == 500
    assert r.json() == {"message": "Internal server error: disk full", "restate_code": None}
    assert not holder.current.deployments


async def test_discovery_sends_headers(
    tmp_path: Path, deployments: tuple[dict[str, int], FakeDeployment]
) -> None:
    ports, fake = deployments
    app, _, _ = make_app(tmp_path)
    fake.requests.clear()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        r = await c.post(
            "/deployments",
            json={
                "uri": f"http://127.0.0.1:{ports['fake']}/rr",
                "use_http_11": True,
                "additional_headers": {"X-Foo": "bar"},
            },
        )
    assert r.status_code == 201
    path, http_version, headers = fake.requests[-1]
    assert (path, http_version) == ("/rr/discover", "1.1")
    names = [k for k, _ in headers if k != "host"]
    assert names[:3] == ["accept", "x-foo", "x-restate-cluster-name"]
    assert dict(headers)["accept"] == (
        "application/vnd.restate.endpointmanifest.v1+json, "
        "application/vnd.restate.endpointmanifest.v2+json, "
        "application/vnd.restate.endpointmanifest.v3+json, "
        "application/vnd.restate.endpointmanifest.v4+json"
    )
    dep = r.json()
    assert dep["max_protocol_version"] == 6


async def test_version_health_openapi(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path, features={"protocol_v7": False})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        r = await c.get("/version")
        assert r.status_code == 200
        body = r.json()
        assert body["min_admin_api_version"] == 2 and body["max_admin_api_version"] == 4
        assert body["ingress_endpoint"] == "http://127.0.0.1:8080/"
        assert body["features"] == {"protocol_v7": False}
        assert list(body) == [
            "version",
            "min_admin_api_version",
            "max_admin_api_version",
            "ingress_endpoint",
            "features",
        ]
        assert (await c.get("/v3/version")).json() == body
        r = await c.get("/health")
        assert (r.status_code, r.content) == (200, b"")
        r = await c.get("/v4/openapi")
        assert r.status_code == 200
        doc = r.json()
        assert doc["openapi"].startswith("3.")
        assert set(doc["paths"]) == {
            "/deployments",
            "/deployments/{deployment}",
            "/services",
            "/services/{service}",
            "/services/{service}/handlers",
            "/services/{service}/handlers/{handler}",
            "/health",
            "/version",
        }
        # Every reference resolves.
        refs = re.findall(r'"\$ref": ?"#/components/(\w+)/([^"]+)"', r.text)
        for kind, name in refs:
            assert name in doc["components"][kind]


async def test_extension_routes(tmp_path: Path) -> None:
    app, _, _ = make_app(tmp_path)

    async def cancel(req: Request) -> Any:
        return json_response(202, {"id": req.params["id"], "version": req.api_version})

    app.route("PATCH", "/invocations/{id}/cancel", cancel)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        r = await c.patch("/invocations/inv_1%41/cancel")
        assert (r.status_code, r.json()) == (202, {"id": "inv_1A", "version": 0})
        r = await c.patch("/v4/invocations/x/cancel")
        assert r.json()["version"] == 4
        r = await c.get("/invocations/x/cancel")
        assert (r.status_code, r.headers["allow"]) == (405, "PATCH")
