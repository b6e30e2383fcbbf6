"""``POST /query`` on the admin API, answered as the official server answers it."""

from __future__ import annotations

from typing import Any, Protocol

from pyrestate.admin.registry import Registry
from pyrestate.admin.web import Handler, PlainError, Request, Response, read_json_body
from pyrestate.query.service import QueryService
from pyrestate.query.tables import RegistrySnapshot

_SERVICE_TY = {"Service": "service", "VirtualObject": "virtual_object", "Workflow": "workflow"}
_DESERIALIZE = "Failed to deserialize the JSON body into the target type: "


class Routes(Protocol):
    def route(self, method: str, path: str, handler: Handler) -> None: ...


def registry_snapshot(registry: Registry, restate_version: str) -> RegistrySnapshot:
    services = [
        {
            "name": s.name,
            "revision": s.revision,
            "public": s.public,
            "ty": _SERVICE_TY.get(str(s.ty), str(s.ty)),
            "deployment_id": s.deployment_id,
        }
        for s in registry.services()
    ]
    deployments = [
        {
            "id": d.id,
            "ty": "http",
            "endpoint": d.uri,
            "created_at": d.created_at_ms,
            "min_service_protocol_version": d.min_protocol_version,
            "max_service_protocol_version": d.max_protocol_version,
            "services": sorted(d.services),
            "protocol_version": d.protocol_version,
        }
        for d in registry.deployments.values()
    ]
    return RegistrySnapshot(services, deployments, restate_version)


def _position(body: bytes) -> str:
    """serde's "at line L column C" for the end of the JSON value (1-based)."""
    text = body.decode(errors="replace").rstrip()
    line = text.count("\n") + 1
    column = len(text) - (text.rfind("\n") + 1)
    return f"at line {line} column {column}"


def _query_of(body: bytes) -> Any:
    def check(value: Any) -> str:
        where = _position(body)
        if not isinstance(value, dict):
            kind = "sequence" if isinstance(value, list) else "a value of another type"
            raise PlainError(422, f"{_DESERIALIZE}invalid type: {kind}, expected struct "
                             f"QueryRequest {where}")  # fmt: skip
        if "query" not in value:
            raise PlainError(422, f"{_DESERIALIZE}missing field `query` {where}")
        if not isinstance(value["query"], str):
            raise PlainError(422, f"{_DESERIALIZE}invalid type: expected a string {where}")
        return value["query"]

    return check


def add_query_routes(app: Routes, service: QueryService) -> None:
    async def query(req: Request) -> Response:
        sql = read_json_body(req, _query_of(req.body))
        # Only exactly this accept value gets JSON; anything else (*/*, none) gets Arrow.
        as_json = req.headers.get("accept") == "application/json"
        answer = await service.query(sql, as_json)
        return Response(answer.status, answer.body, [("content-type", answer.content_type)])

    app.route("POST", "/query", query)
