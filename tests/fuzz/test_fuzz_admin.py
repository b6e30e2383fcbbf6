"""Admin fuzz (:9070): random methods and bodies on every route, registrations of
deployments whose discovery answers are mutated manifests.

A fake deployment serves one mutated manifest per case; when the server accepts one,
the test sends an invocation to a handler of it, so odd retry policies and timeouts
reach the invoker too. The admin API may refuse anything (discovery failures are 500s
with a `restate_code`, like the official server's), but must answer in time, never with
an internal error, never log a traceback, and must leave the Greeter working.
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fake_deployment import MANIFEST_V4, Answer, FakeDeployment, manifest
from fuzzkit import (
    REQUEST_TIMEOUT,
    Findings,
    Target,
    budget,
    case_rng,
    exchange,
    http_request,
    running_target,
    shorten,
)
from harness import free_port

PART = "admin"
SHARE = 0.2
BATCH = 25

ROUTES = (
    "/health",
    "/version",
    "/openapi",
    "/deployments",
    "/deployments/{dep}",
    "/services",
    "/services/{svc}",
    "/services/{svc}/handlers",
    "/services/{svc}/handlers/{handler}",
    "/services/{svc}/state",
    "/invocations/{inv}",
    "/invocations/{inv}/cancel",
    "/invocations/{inv}/kill",
    "/invocations/{inv}/purge",
    "/query",
    "/subscriptions",
    "/subscriptions/{sub}",
    "/",
    "/{junk}",
)
VERSIONS = ("", "", "", "/v1", "/v2", "/v3", "/v4", "/v0", "/v5", "/v99", "/v" + "9" * 5000)
METHODS = ("GET", "POST", "POST", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS")
MUTATING = ("POST", "PATCH", "PUT", "DELETE")
ODD_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    2**31,
    2**32,
    2**63,
    2**64,
    2**64 + 1,
    -(2**63) - 1,
    10**400,
    1.5,
    1e308,
    float("inf"),
    float("-inf"),
    float("nan"),
    "",
    "x" * 100_000,
    "é🙂\u0000",
    [],
    {},
    [1] * 1000,
    {"a": {"b": {"c": []}}},
    "PAUSE",
    "KILL",
    "SERVICE",
    "VIRTUAL_OBJECT",
    "WORKFLOW",
    "EXCLUSIVE",
    "SHARED",
    "BIDI_STREAM",
    "REQUEST_RESPONSE",
    "zstd",
    "18446744073709551616",
)
MANIFEST_FIELDS = (
    "abortTimeout",
    "documentation",
    "enableLazyState",
    "idempotencyRetention",
    "inactivityTimeout",
    "ingressPrivate",
    "journalRetention",
    "metadata",
    "retryPolicyExponentiationFactor",
    "retryPolicyInitialInterval",
    "retryPolicyMaxAttempts",
    "retryPolicyMaxInterval",
    "retryPolicyOnMaxAttempts",
    "workflowCompletionRetention",
    "lambdaCompression",
    "ty",
    "name",
    "input",
    "output",
    "unknownField",
)
REGISTER_FIELDS = (
    "uri",
    "arn",
    "use_http_11",
    "force",
    "dry_run",
    "breaking",
    "additional_headers",
    "metadata",
    "auth",
    "assume_role_arn",
    "extra",
)
MANIFEST_CONTENT_TYPES = (
    MANIFEST_V4,
    "application/vnd.restate.endpointmanifest.v1+json",
    "application/vnd.restate.endpointmanifest.v3+json",
    "application/json",
    "",
)


@dataclass(frozen=True, slots=True)
class Request:
    kind: str
    data: bytes
    registers: bool  # a POST /deployments whose answer may name new services

    @property
    def label(self) -> str:
        return f"{self.kind}: {shorten(self.data, 600)}"


# --- mutated manifests


def _nodes(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every value inside `doc` (dict keys and list indexes)."""
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _nodes(v, (*path, i))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        doc = doc[step]
    return doc


def mutate_manifest(rng: random.Random, case: int) -> tuple[str, Answer]:
    # Names repeat over cases now and then, so updates and breaking changes happen too.
    names = (f"AdminFuzz{case % 7}", f"AdminFuzzObj{case % 5}")
    doc = manifest(rng.choice(("BIDI_STREAM", "REQUEST_RESPONSE")), names)
    changes: list[str] = []
    for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
        paths = _nodes(doc)[1:]
        path = rng.choice(paths)
        op = rng.randrange(4)
        parent = _parent(doc, path)
        if op == 0:
            value = rng.choice(ODD_VALUES)
            parent[path[-1]] = value
            changes.append(f"{path}={shorten(value, 60)}")
        elif op == 1 and isinstance(parent, dict):
            del parent[path[-1]]
            changes.append(f"del {path}")
        elif op == 2:
            target = parent if isinstance(parent, dict) else doc
            name, value = rng.choice(MANIFEST_FIELDS), rng.choice(ODD_VALUES)
            target[name] = value
            changes.append(f"{path[:-1]}.{name}={shorten(value, 60)}")
        elif op == 3:
            services = doc.get("services")
            service = rng.choice(services) if isinstance(services, list) and services else None
            if isinstance(service, dict) and isinstance(service.get("handlers"), list):
                handler = service["handlers"][0] if service["handlers"] else {"name": "h"}
                many = []
                for n in range(rng.choice((2, 300))):
                    h = copy.deepcopy(handler)
                    if isinstance(h, dict):
                        h["name"] = f"h{n}"
                    many.append(h)
                service["handlers"] = many
                changes.append(f"{len(many)} handlers")
    body = json.dumps(doc).encode()
    status, ctype = 200, rng.choice(MANIFEST_CONTENT_TYPES[:3])
    if rng.random() < 0.1:
        status, ctype = rng.choice(
            ((200, ""), (200, "application/json"), (500, MANIFEST_V4), (204, ""))
        )
        changes.append(f"status {status} content-type {ctype!r}")
    if rng.random() < 0.05:
        body = rng.choice(
            (b"", b"{", b"[" * 100_000, b"\xff\xfe", b'{"services": ' + b"1" * 5000 + b"}")
        )
        changes.append(f"body {shorten(body, 40)}")
    headers = (("content-type", ctype),) if ctype else ()
    return "; ".join(changes) or "valid", Answer(status, headers, body if status != 204 else b"")


# --- request bodies


def _register_body(rng: random.Random, uri_pool: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"uri": rng.choice(uri_pool)}
    for name in rng.sample(REGISTER_FIELDS, rng.randrange(0, 4)):
        if name == "additional_headers":
            body[name] = rng.choice(
                (
                    {"x-a": "b"},
                    {"": "v"},
                    {"x-bad\n": "v"},
                    {"x-a": "\r\nInjected: 1"},
                    {"x-a": 5},
                    {"x-big": "a" * 100_000},
                    {f"x-{n}": "v" for n in range(500)},
                    rng.choice(ODD_VALUES),
                )
            )
        elif name in ("use_http_11", "force", "dry_run", "breaking"):
            body[name] = rng.choice((True, False, *rng.sample(ODD_VALUES, 2)))
        else:
            body[name] = rng.choice(ODD_VALUES)
    return body


def _raw_json(rng: random.Random, doc: Any) -> bytes:
    text = json.dumps(doc).encode()
    pick = rng.randrange(12)
    return (
        text,
        text,
        text,
        text,
        text[: rng.randrange(0, max(1, len(text)))],
        b"\xef\xbb\xbf" + text,
        text.decode().encode("utf-16"),
        text.replace(b'"uri"', b'"uri": "x", "uri"', 1),
        b"[" * 100_000,
        b'{"uri": ' + b"1" * 5000 + b"}",
        rng.choice((b"", b"null", b"[]", b"1", b'"str"', b"\xff\xfe\x00")),
        text + b" trailing",
    )[pick]


def _segment(rng: random.Random, pool: tuple[str, ...]) -> str:
    value = rng.choice(
        (
            *pool,
            "",
            "%00",
            "%2F",
            "..",
            "a" * 10_000,
            "ключ",
            "dp_" + "z" * 26,
            "dp_1",
            "inv_1" + "0" * 33,
        )
    )
    return value if value.startswith("%") else quote(value, safe="")


def make_request(
    rng: random.Random, greeter_ids: list[str], fuzz_ids: list[str], uri_pool: list[str]
) -> Request:
    # Half the registrations are well-formed, so that mutated manifests get discovered.
    if rng.random() < 0.25:
        body = {"uri": uri_pool[0]}
        if rng.random() < 0.5:
            body["force"] = rng.random() < 0.5
        path = rng.choice(("", "/v2", "/v3", "/v4")) + "/deployments"
        data = http_request(
            b"POST",
            path.encode(),
            [(b"content-type", b"application/json")],
            json.dumps(body).encode(),
        )
        return Request("POST /deployments", data, True)
    method = rng.choice(METHODS)
    route = rng.choice(ROUTES)
    if rng.random() < 0.25:
        method, route = "POST", "/deployments"
    # The Greeter and its deployment must survive: no mutations of them.
    deps = (*fuzz_ids, *greeter_ids) if method not in MUTATING else tuple(fuzz_ids)
    services = ("AdminFuzz0", "AdminFuzzObj1") + (("Greeter",) if method not in MUTATING else ())
    path = route.format(
        dep=_segment(rng, deps),
        svc=_segment(rng, services),
        handler=_segment(rng, ("run", "greet", "h1")),
        inv=_segment(rng, ()),
        sub=_segment(rng, ("sub_1",)),
        junk=_segment(rng, ("openapi.json", "ui")),
    )
    path = rng.choice(VERSIONS) + path
    query = rng.choice(
        ("", "", "", "?force=true", "?force=maybe", "?force=", "?force=true&force=false", "?%ZZ")
    )
    registers = method == "POST" and route == "/deployments"
    if registers:
        body = _raw_json(rng, _register_body(rng, uri_pool))
    elif rng.random() < 0.5:
        body = _raw_json(rng, rng.choice((*ODD_VALUES, {"uri": "x"}, {"query": "SELECT 1"})))
    else:
        body = b""
    ctype = rng.choice(
        (
            b"application/json",
            b"application/json",
            b"",
            b"text/plain",
            b"application/json; charset=utf-16",
        )
    )
    headers = [(b"content-type", ctype)] if ctype else []
    data = http_request(method.encode(), path.encode() + query.encode(), headers, body)
    return Request(f"{method} {route}", data, registers)


def _invoke_registered(
    target: Target, findings: Findings, answer: dict[str, Any], label: str
) -> None:
    """Send one invocation to a freshly registered service: its odd options get used."""
    for service in answer.get("services", [])[:1]:
        handlers = service.get("handlers") or []
        if not handlers:
            return
        handler = handlers[0]["name"]
        key = (
            "/k"
            if service.get("ty") in ("VirtualObject", "Workflow", "VIRTUAL_OBJECT", "WORKFLOW")
            else ""
        )
        path = f"/{service['name']}{key}/{handler}/send".encode()
        reply = exchange(
            target.ingress_port,
            http_request(b"POST", path, [(b"content-type", b"application/json")], b"{}"),
        )
        if reply.timed_out:
            findings.add("hang", "send to a freshly registered service got no answer", label, "")
        elif reply.status is not None and reply.status >= 500:
            text = reply.body.decode("utf-8", "replace")
            findings.add(
                f"HTTP {reply.status}",
                f"send to a registered service: {shorten(text, 160)}",
                label,
                text,
            )


def _expected_500(status: int, text: str) -> bool:
    """Discovery failures are 500s with the admin error shape, as the official server
    answers them (501 is its answer to what it does not implement); the catch-all for
    unexpected exceptions says "Internal server error"."""
    if status == 501:
        return True
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    message = doc.get("message") if isinstance(doc, dict) else None
    return (
        status == 500
        and isinstance(message, str)
        and "restate_code" in doc
        and not message.startswith("Internal server error")
    )


def _check_reply(target: Target, findings: Findings, req: Request) -> None:
    reply = exchange(target.admin_port, req.data)
    if reply.timed_out:
        findings.add("hang", f"no answer within {REQUEST_TIMEOUT:g}s to {req.kind}", req.label, "")
        return
    if reply.status is None:
        findings.add(
            "no answer",
            f"connection closed without an answer to {req.kind}",
            req.label,
            f"error: {reply.error}; received: {shorten(reply.body)}",
        )
        return
    text = reply.body.decode("utf-8", "replace")
    if reply.status >= 500 and not _expected_500(reply.status, text):
        findings.add(f"HTTP {reply.status}", f"{req.kind}: {shorten(text, 160)}", req.label, text)
    if req.registers and reply.status in (200, 201):
        try:
            answer = json.loads(reply.body)
        except ValueError:
            findings.add(
                "bad answer", f"{req.kind}: registration answer is not JSON", req.label, text
            )
            return
        _invoke_registered(target, findings, answer, req.label)


def _deployment_ids(target: Target) -> tuple[list[str], list[str]]:
    """(ids of the Greeter's deployment, ids of the rest), looked up by URI: a server
    that had to start afresh gave the Greeter a new id."""
    listed = target.http.get(f"{target.server.admin_url}/deployments").json()
    greeter: list[str] = []
    others: list[str] = []
    for d in listed.get("deployments", []):
        mine = d.get("uri", "").rstrip("/") == target.greeter.url
        (greeter if mine else others).append(d["id"])
    return greeter, others[:20]


def test_admin_fuzz(tmp_path: Path, seed: int) -> None:
    findings = Findings(seed, PART)
    fake = FakeDeployment(tmp_path / "fake-deployment.log")
    fake.start()
    try:
        with running_target(tmp_path, findings) as target:
            greeter_ids, fuzz_ids = _deployment_ids(target)
            closed = f"http://127.0.0.1:{free_port()}"
            fixed_uris = [
                closed,
                target.server.admin_url,
                target.server.ingress_url + "/",
                "",
                "not a uri",
                "http://",
                "ftp://127.0.0.1/",
                "http://[::1",
                "http://127.0.0.1:99999",
                "/relative",
                "http://user:pass@127.0.0.1:1/",
                fake.url + "/m/0?q=1#frag",
                "http://ключ.example/",
                fake.url + "/%00",
            ]
            end = time.monotonic() + budget(SHARE)
            index = 0
            while time.monotonic() < end:
                labels = []
                for _ in range(BATCH):
                    rng = case_rng(seed, PART, index)
                    change, answer = mutate_manifest(rng, index)
                    fake.set_discovery(f"/m/{index}", answer)
                    mutated = fake.url + f"/m/{index}"
                    # Mostly the mutated manifest; a closed port costs a 1.5 s retry loop.
                    pool = (
                        [mutated] * 30 + fixed_uris[1:] + ([closed] if rng.random() < 0.1 else [])
                    )
                    req = make_request(rng, greeter_ids, fuzz_ids, pool)
                    if mutated.encode() in req.data:
                        req = Request(
                            req.kind + f" (manifest: {shorten(change, 300)})",
                            req.data,
                            req.registers,
                        )
                    labels.append(shorten(req.label, 160))
                    _check_reply(target, findings, req)
                    target.observe(req.label)
                    index += 1
                target.check(f"admin requests {index - BATCH}..{index - 1}: " + " | ".join(labels))
                greeter_ids, fuzz_ids = _deployment_ids(target)
    finally:
        fake.stop()
    assert not findings, findings.report()
