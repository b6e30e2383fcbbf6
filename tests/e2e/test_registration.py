"""Registration through the admin API and the ingress's answers to good and bad requests.

Error bodies and headers are asserted exactly as the official server 1.7.12 returns them,
because clients (and the official CLI) parse them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
from harness import Deployment, Server, register

INVOCATION_ID = re.compile(r"^inv_1[0-9a-zA-Z]{33}$")
COUNTER_HANDLERS = {"add", "get", "reset", "slowAdd"}


def ingress_error(resp: httpx.Response, code: int, message: str) -> None:
    assert resp.status_code == code, resp.text
    assert resp.headers["x-restate-error-source"] == "ingress"
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.json() == {"code": code, "message": message, "source": "ingress"}


def test_register_lists_services(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    dep = deployment("counter")
    reg = dep.registration
    assert reg["id"].startswith("dp_")
    (svc,) = reg["services"]
    assert svc["name"] == "Counter"
    assert svc["ty"] == "VirtualObject"
    assert {h["name"] for h in svc["handlers"]} == COUNTER_HANDLERS
    kinds = {h["name"]: h["ty"] for h in svc["handlers"]}
    assert kinds["get"] == "Shared"
    assert kinds["add"] == "Exclusive"

    services = http.get(f"{server.admin_url}/services")
    assert services.status_code == 200
    listed = {s["name"]: s for s in services.json()["services"]}
    assert {h["name"] for h in listed["Counter"]["handlers"]} == COUNTER_HANDLERS
    assert listed["Counter"]["deployment_id"] == reg["id"]

    deployments = http.get(f"{server.admin_url}/deployments")
    assert deployments.status_code == 200
    (listed_dep,) = deployments.json()["deployments"]
    assert listed_dep["id"] == reg["id"]
    assert listed_dep["uri"].rstrip("/") == dep.url
    assert listed_dep["protocol_type"] == "BidiStream"

    # Registering the very same deployment again is idempotent.
    again = register(http, server.admin_url, dep.url)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == reg["id"]


def test_register_http1_deployment(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    dep = deployment("counter", http1=True)
    (listed,) = http.get(f"{server.admin_url}/deployments").json()["deployments"]
    assert listed["id"] == dep.registration["id"]
    assert listed["protocol_type"] == "RequestResponse"
    resp = http.post(f"{server.ingress_url}/Counter/h1/add", json=3)
    assert resp.status_code == 200, resp.text
    assert resp.json() == 3


def test_unknown_service_and_handler(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("counter")
    ingress_error(
        http.post(f"{server.ingress_url}/Nope/x", json=1),
        404,
        "service 'Nope' not found, make sure to register the service before calling it.",
    )
    ingress_error(
        http.post(f"{server.ingress_url}/Counter/k/nope", json=1),
        404,
        "the service 'Counter' exists, but the handler 'nope' was not found, check that the "
        "handler exists in the latest registered service version.",
    )


def test_unknown_service_before_any_registration(server: Server, http: httpx.Client) -> None:
    ingress_error(
        http.post(f"{server.ingress_url}/Nope/x", json=1),
        404,
        "service 'Nope' not found, make sure to register the service before calling it.",
    )


def test_bad_content_type(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("counter")
    url = f"{server.ingress_url}/Counter/k/add"
    ingress_error(
        http.post(url, content=b"1", headers={"content-type": "text/plain"}),
        400,
        "input validation error: Content-type 'text/plain' does not match 'application/json'",
    )
    ingress_error(http.post(url, content=b"1"), 400, "input validation error: Empty content-type")


def test_object_call_without_key(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("counter")
    ingress_error(
        http.post(f"{server.ingress_url}/Counter/add", json=1),
        400,
        "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler",
    )
    # The empty string, however, is a valid key.
    resp = http.post(f"{server.ingress_url}/Counter//add", json=2)
    assert resp.status_code == 200, resp.text
    assert resp.json() == 2


def test_success_response(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("counter")
    resp = http.post(f"{server.ingress_url}/Counter/ok/add", json=5)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert INVOCATION_ID.match(resp.headers["x-restate-id"]), resp.headers
    assert resp.json() == 5
    # A shared handler without a body works with GET too.
    got = http.get(f"{server.ingress_url}/Counter/ok/get")
    assert got.status_code == 200, got.text
    assert got.json() == 5
    assert got.headers["x-restate-id"] != resp.headers["x-restate-id"]


def test_terminal_error(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment], count_dir: Path
) -> None:
    deployment("durability")
    resp = http.post(
        f"{server.ingress_url}/Faulty/terminal",
        json={"code": 418, "message": "I'm a teapot", "tag": "teapot"},
    )
    assert resp.status_code == 418, resp.text
    assert resp.headers["x-restate-error-source"] == "invocation"
    assert INVOCATION_ID.match(resp.headers["x-restate-id"])
    assert resp.json() == {"code": 418, "message": "I'm a teapot", "source": "invocation"}
    # Terminal means no retry: the handler ran once.
    assert (count_dir / "faulty-teapot.calls").read_text().splitlines() == ["call"]

    default = http.post(f"{server.ingress_url}/Faulty/terminal", json={"tag": "default"})
    assert default.status_code == 500, default.text
    assert default.json() == {"code": 500, "message": "failed on purpose", "source": "invocation"}


def test_send_then_attach(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("counter")
    sent = http.post(f"{server.ingress_url}/Counter/s/add/send", json=7)
    assert sent.status_code == 202, sent.text
    body = sent.json()
    assert body["status"] == "Accepted"
    inv = body["invocationId"]
    assert INVOCATION_ID.match(inv)
    assert sent.headers["x-restate-id"] == inv

    attached = http.get(f"{server.ingress_url}/restate/invocation/{inv}/attach")
    assert attached.status_code == 200, attached.text
    assert attached.json() == 7
    output = http.get(f"{server.ingress_url}/restate/invocation/{inv}/output")
    assert output.status_code == 200, output.text
    assert output.json() == 7


def test_demo_quick_start(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    # The README's quick start, step by step.
    deployment("demo")
    greet = http.post(f"{server.ingress_url}/Greeter/greet", json="Ada")
    assert greet.status_code == 200, greet.text
    assert greet.json() == "Hello, Ada!"
    for n in (1, 2):
        visit = http.post(f"{server.ingress_url}/Visits/Ada/visit")
        assert visit.status_code == 200, visit.text
        assert visit.json() == f"Welcome, Ada: visit number {n}."


def test_a_deployment_moves_to_a_new_address(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    first = deployment("counter")
    dp = first.registration["id"]
    assert http.post(f"{server.ingress_url}/Counter/m/add", json=1).json() == 1
    # The same service code on a new port; the deployment is pointed there.
    moved = deployment("counter", do_register=False)
    url = f"{server.admin_url}/deployments/{dp}"
    resp = http.patch(url, json={"uri": moved.url})
    assert resp.status_code == 200, resp.text
    assert resp.json()["id"] == dp and resp.json()["uri"].rstrip("/") == moved.url
    first.stop()
    assert http.post(f"{server.ingress_url}/Counter/m/add", json=1).json() == 2
    assert http.get(url).json()["uri"].rstrip("/") == moved.url
    # A dry run changes nothing; overwrite takes the services the new address exposes.
    other = deployment("control", do_register=False)
    dry = http.patch(url, json={"uri": other.url, "overwrite": True, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert http.get(url).json()["uri"].rstrip("/") == moved.url
    done = http.patch(url, json={"uri": other.url, "overwrite": True})
    assert done.status_code == 200, done.text
    names = {s["name"] for s in http.get(url).json()["services"]}
    assert "Booking" in names and "Counter" not in names
    missing = http.patch(f"{server.admin_url}/deployments/dp_1{'0' * 22}", json={"uri": moved.url})
    assert missing.status_code == 404, missing.text
