"""An admin app with the UI, in-process: registration by a fake discovery, SQL by a fake.

The fake ``POST /query`` records every statement the pages send and answers from a
function the test sets, so pages can be driven without storage or a query engine.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from pyrestate.admin.app import AdminApp
from pyrestate.admin.manifest import decode_manifest
from pyrestate.admin.model import DiscoveredEndpoint
from pyrestate.admin.registry import Registry
from pyrestate.admin.web import Request, Response, json_response
from pyrestate.schemas import RegistryHolder
from pyrestate.ui.routes import add_ui_routes

INGRESS = "http://127.0.0.1:1/"  # nothing listens: the playground reports it unreachable

MANIFEST = {
    "protocolMode": "BIDI_STREAM",
    "minProtocolVersion": 5,
    "maxProtocolVersion": 6,
    "services": [
        {
            "name": "Greeter",
            "ty": "SERVICE",
            "handlers": [
                {
                    "name": "greet",
                    "input": {"contentType": "application/json", "jsonSchema": {"type": "string"}},
                    "output": {"contentType": "application/json"},
                }
            ],
        },
        {
            "name": "Obj",
            "ty": "VIRTUAL_OBJECT",
            "handlers": [
                {"name": "put", "ty": "EXCLUSIVE", "input": {"contentType": "application/json"}}
            ],
        },
        {
            "name": "Flow",
            "ty": "WORKFLOW",
            "handlers": [
                {"name": "run", "ty": "WORKFLOW", "input": {"contentType": "application/json"}},
                {"name": "signal", "ty": "SHARED", "input": {"contentType": "application/json"}},
            ],
        },
    ],
}


async def fake_discover(
    uri: str, *, use_http_11: bool = False, additional_headers: Mapping[str, str] | None = None
) -> DiscoveredEndpoint:
    manifest = decode_manifest(json.dumps(MANIFEST).encode())
    return DiscoveredEndpoint(
        protocol_type="BidiStream",
        http_version="HTTP/1.1" if use_http_11 else "HTTP/2.0",
        min_protocol_version=5,
        max_protocol_version=6,
        services=tuple(manifest["services"]),
        sdk_version="fake/1.0",
    )


class FakeAdmin:
    """The admin app and what its fake SQL endpoint saw."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.rows: Callable[[str], list[dict[str, Any]]] = lambda sql: []
        self.app = AdminApp(RegistryHolder(Registry()), save=self._save, discover=fake_discover)
        self.app.route("POST", "/query", self._query)
        add_ui_routes(self.app, ingress_url=INGRESS)

    async def _save(self, registry: Registry) -> None:
        pass

    async def _query(self, req: Request) -> Response:
        sql = json.loads(req.body)["query"]
        self.statements.append(sql)
        return json_response(200, {"rows": self.rows(sql)})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://admin.test"
        )
