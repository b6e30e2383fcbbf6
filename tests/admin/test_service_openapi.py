"""``GET /services/{service}/openapi`` against the documents the official server 1.7.12 gave.

``fixtures/openapi/oa-*.json`` were captured from the official server for services of the
example apps, registered from a fresh start (revision 1) with its ingress on port 33291.
Here the same example apps are served by hypercorn, registered through pyrestate's admin
API (real discovery), and the generated documents must equal the captured ones.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from app_servers import Servers

from pyrestate.admin.app import AdminApp
from pyrestate.admin.model import HandlerSchema, ServiceSchema
from pyrestate.admin.payload_rules import ContentTypeMatcher, InputRule, OutputRules
from pyrestate.admin.registry import Registry
from pyrestate.admin.service_openapi import service_openapi

# The example apps live at the repository root, outside the installed package.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
from examples import counter, durability, signup  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "openapi"
# Where the official server's ingress listened when the fixtures were captured.
INGRESS_URL = "http://127.0.0.1:33291/"
APPS = {"counter": counter.app, "signup": signup.app, "durability": durability.app}


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, int]]:
    servers = Servers(APPS)
    try:
        yield servers.ports
    finally:
        servers.close()


class _Holder:
    def __init__(self) -> None:
        self.current = Registry()


async def _no_save(registry: Registry) -> None:
    return None


@pytest.fixture
async def admin(ports: dict[str, int]) -> AsyncIterator[httpx.AsyncClient]:
    app = AdminApp(_Holder(), save=_no_save, ingress_url=INGRESS_URL)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
        for port in ports.values():
            resp = await client.post("/deployments", json={"uri": f"http://127.0.0.1:{port}"})
            assert resp.status_code == 201, resp.text
        yield client


@pytest.mark.parametrize("service", ["Counter", "SignupWorkflow", "Flaky"])
async def test_same_document_as_official(admin: httpx.AsyncClient, service: str) -> None:
    resp = await admin.get(f"/services/{service}/openapi")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    captured = (FIXTURES / f"oa-{service}.json").read_bytes()
    assert resp.json() == json.loads(captured)
    # Byte for byte too: the official prints compact JSON with sorted keys.
    assert resp.content == captured


async def test_unknown_service(admin: httpx.AsyncClient) -> None:
    resp = await admin.get("/services/Nope/openapi")
    assert resp.status_code == 404
    assert resp.json() == {
        "message": "The requested service 'Nope' does not exist",
        "restate_code": None,
    }


# --- cases the example apps do not show, following the official generator


def _service(*handlers: HandlerSchema, **kw: Any) -> ServiceSchema:
    return ServiceSchema(
        name="S",
        ty=kw.pop("ty", "Service"),
        handlers={h.name: h for h in handlers},
        deployment_id="dp_1",
        revision=3,
        **kw,
    )


def test_private_handlers_are_left_out_and_service_privacy_is_not_looked_at() -> None:
    doc = service_openapi(
        _service(
            HandlerSchema("hidden", None, public=False, public_override=False),
            HandlerSchema("inherited", None, public=False),
            public=False,
        ),
        None,
    )
    assert sorted(doc["paths"]) == [
        "/restate/call/S/inherited",
        "/restate/invocation/S/inherited/{idempotencyKey}/attach",
        "/restate/invocation/S/inherited/{idempotencyKey}/output",
        "/restate/send/S/inherited",
    ]
    assert "servers" not in doc
    assert doc["info"] == {"title": "S", "version": "3"}


def test_docs_metadata_and_default_rules() -> None:
    h = HandlerSchema("h", None, public=True, documentation="", metadata={"a": "b"})
    doc = service_openapi(_service(h, documentation="Docs", metadata={"team": "x"}), None)
    assert doc["info"] == {
        "title": "S",
        "version": "3",
        "description": "Docs",
        "x-restate-extensions": {"team": "x"},
    }
    call = doc["paths"]["/restate/call/S/h"]["post"]
    assert call["description"] == ""
    assert call["x-restate-extensions"] == {"a": "b"}
    # Default input: no body, or anything; default output: JSON without a schema.
    assert call["requestBody"] == {"content": {"*/*": {}}, "required": False}
    assert call["responses"]["200"] == {"description": "", "content": {"application/json": {}}}
    attach = doc["paths"]["/restate/invocation/S/h/{idempotencyKey}/attach"]["get"]
    assert attach["description"].endswith("GET /restate/attach/{invocationId}. ")
    assert doc["components"]["schemas"].keys() == {"RestateError"}


def test_schemas_and_their_local_refs() -> None:
    schema = {"$defs": {"X": {"type": "string"}}, "items": {"$ref": "#/$defs/X"}}
    h = HandlerSchema(
        "h",
        None,
        public=True,
        input_rules=(InputRule("json", ContentTypeMatcher("application", "json"), True),),
        output_rules=OutputRules("application/json", json_schema=schema),
    )
    doc = service_openapi(_service(h), None)
    assert doc["paths"]["/restate/call/S/h"]["post"]["requestBody"] == {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/hRequest"}}},
        "required": True,
    }
    schemas = doc["components"]["schemas"]
    assert schemas["hRequest"] == {}
    assert schemas["hResponse"]["items"] == {"$ref": "#/components/schemas/hResponse/$defs/X"}
