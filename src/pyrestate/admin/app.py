"""The admin API (port 9070): deployments, services, health, version, OpenAPI.

A plain ASGI application with a small route table, so that other endpoints
(invocations, SQL, …) can be added with `AdminApp.route`. Every route is also served
under the ``/v2``, ``/v3`` and ``/v4`` prefixes, like the official server; the prefix
decides some defaults (``force`` defaults to true only under ``/v2``) and ``/v1`` is
refused. Status codes, bodies and headers follow the official server 1.7.12; there are
no CORS headers (the official admin API sends none).

Registration commits before it answers: the new registry is saved through the ``save``
callable and swapped into the holder before the 201 goes out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qsl

from pyrestate import __version__
from pyrestate.admin import discovery as discovery_mod
from pyrestate.admin import service_openapi
from pyrestate.admin.errors import AdminError, DeploymentNotFound, ServiceNotFound
from pyrestate.admin.ids import deployment_id_error, new_deployment_id
from pyrestate.admin.model import Deployment, DiscoveredEndpoint, ProtocolType, ServiceSchema
from pyrestate.admin.register_request import (
    RegisterRequest,
    invalid_field,
    parse_register_request,
    uri_problem,
)
from pyrestate.admin.registry import Registry
from pyrestate.admin.render import (
    render_deployment,
    render_detailed_deployment,
    render_handler,
    render_register_response,
    render_service,
)
from pyrestate.admin.web import (
    Handler,
    PlainError,
    Receive,
    Request,
    Response,
    Route,
    Scope,
    Send,
    error_response,
    json_response,
    read_body,
    read_json_body,
    text_response,
)
from pyrestate.core.limits import OutOfRange, duration_ms
from pyrestate.ingress.durations import DurationError, parse_duration_ms
from pyrestate.logs import redact_uri

log = logging.getLogger("pyrestate.admin")

MIN_ADMIN_API_VERSION = 2
MAX_ADMIN_API_VERSION = 4
_VERSION_PREFIX = re.compile(r"^/v([1-4])(/.*)?$")


class RegistryHolderLike(Protocol):
    current: Registry


SaveFn = Callable[[Registry], Awaitable[None]]


class DiscoverFn(Protocol):
    def __call__(
        self,
        uri: str,
        *,
        use_http_11: bool = ...,
        additional_headers: Mapping[str, str] | None = ...,
    ) -> Awaitable[DiscoveredEndpoint]: ...


def _load_openapi() -> dict[str, Any]:
    text = resources.files("pyrestate.admin").joinpath("openapi.json").read_text("utf-8")
    doc = json.loads(text)
    doc.setdefault("info", {})["version"] = __version__
    return doc


class AdminApp:
    """ASGI app for the admin API. ``registry_holder.current`` is the live registry."""

    def __init__(
        self,
        registry_holder: RegistryHolderLike,
        *,
        save: SaveFn,
        ingress_url: str | None = None,
        discover: DiscoverFn = discovery_mod.discover,
        features: Mapping[str, bool] | None = None,
        server_version: str = __version__,
        clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        random80: Callable[[], int] = lambda: int.from_bytes(os.urandom(10), "big"),
    ) -> None:
        self.holder = registry_holder
        self._save = save
        self._ingress_url = ingress_url
        self._discover = discover
        self._features = dict(features or {})
        # The official CLI picks SQL dialects by comparing this with Restate versions.
        self._server_version = server_version
        self._clock_ms = clock_ms
        self._random80 = random80
        # Registry changes are applied one at a time on the latest value.
        self._lock = asyncio.Lock()
        self._openapi: bytes | None = None
        self._routes: list[Route] = []
        self.route("GET", "/health", self._health)
        self.route("GET", "/version", self._version)
        self.route("GET", "/openapi", self._openapi_doc)
        self.route("GET", "/deployments", self._list_deployments)
        self.route("POST", "/deployments", self._create_deployment)
        self.route("GET", "/deployments/{deployment}", self._get_deployment)
        self.route("DELETE", "/deployments/{deployment}", self._delete_deployment)
        self.route("PATCH", "/deployments/{deployment}", self._update_deployment)
        self.route("GET", "/services", self._list_services)
        self.route("GET", "/services/{service}", self._get_service)
        self.route("PATCH", "/services/{service}", self._modify_service)
        self.route("GET", "/services/{service}/handlers", self._list_handlers)
        self.route("GET", "/services/{service}/handlers/{handler}", self._get_handler)
        self.route("GET", "/services/{service}/openapi", self._service_openapi)

    # --- extension point

    def route(self, method: str, path: str, handler: Handler) -> None:
        """Add an endpoint, e.g. ``route("PATCH", "/invocations/{id}/cancel", h)``.

        It is also served under the version prefixes; ``{name}`` segments arrive
        percent-decoded in ``Request.params``.
        """
        # A trailing slash stays part of the path: "/ui/" is not "/ui".
        segments = tuple(path.lstrip("/").split("/"))
        self._routes.append(Route(method.upper(), segments, handler))

    # --- ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = await self._dispatch(scope, receive)
        head_only = scope["method"] == "HEAD"
        headers = [(k.encode(), v.encode()) for k, v in response.headers]
        headers.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head_only else response.body})

    async def _dispatch(self, scope: Scope, receive: Receive) -> Response:
        raw = scope.get("raw_path")
        path = raw.decode("latin-1").split("?", 1)[0] if raw else scope["path"]
        api_version = 0
        m = _VERSION_PREFIX.match(path)
        if m is not None:
            api_version = int(m.group(1))
            if api_version < MIN_ADMIN_API_VERSION and m.group(2) != "/":
                return text_response(
                    400,
                    f"Unsupported Admin API version V{api_version}. This server supports "
                    f"versions between V{MIN_ADMIN_API_VERSION} and V{MAX_ADMIN_API_VERSION}.",
                )
            path = m.group(2) or "/"
        parts = path[1:].split("/") if path.startswith("/") else [path]
        method = scope["method"].upper()
        lookup = "GET" if method == "HEAD" else method
        allowed: list[str] = []
        for r in self._routes:
            params = r.match(parts)
            if params is None:
                continue
            if r.method != lookup:
                allowed.append(r.method)
                continue
            try:
                request = Request(
                    method=method,
                    path=path,
                    params=params,
                    query=parse_qsl(scope.get("query_string", b"").decode("latin-1")),
                    headers={
                        k.decode("latin-1").lower(): v.decode("latin-1")
                        for k, v in scope.get("headers", ())
                    },
                    body=await read_body(receive),
                    api_version=api_version,
                )
                return await r.handler(request)
            except AdminError as e:
                return error_response(e)
            except PlainError as e:
                return text_response(e.status, e.text)
            except Exception as e:
                # Nothing was made visible (commit happens last); say so like the official.
                log.exception("admin request %s %s failed", method, path)
                return json_response(
                    500, {"message": f"Internal server error: {e}", "restate_code": None}
                )
        if allowed:
            if method == "PUT" and parts[0] == "deployments" and len(parts) == 2:
                # The official kept PUT only to tell clients to use PATCH.
                return json_response(
                    405,
                    {
                        "message": "PUT deployment is deprecated, use PATCH instead",
                        "restate_code": None,
                    },
                )
            methods: list[str] = []
            for name in allowed:
                if name not in methods:
                    methods.append(name)
                    if name == "GET":
                        methods.append("HEAD")
            return Response(405, headers=[("allow", ",".join(methods))])
        return Response(404)

    # --- health, version, openapi

    async def _health(self, req: Request) -> Response:
        return Response(200)

    async def _version(self, req: Request) -> Response:
        return json_response(
            200,
            {
                "version": self._server_version,
                "min_admin_api_version": MIN_ADMIN_API_VERSION,
                "max_admin_api_version": MAX_ADMIN_API_VERSION,
                "ingress_endpoint": self._ingress_url,
                "features": self._features,
            },
        )

    async def _openapi_doc(self, req: Request) -> Response:
        if self._openapi is None:
            self._openapi = json.dumps(_load_openapi(), separators=(",", ":")).encode()
        return Response(200, self._openapi, [("content-type", "application/json")])

    # --- deployments

    def _deployment_id(self, req: Request) -> str:
        value = req.params["deployment"]
        problem = deployment_id_error(value)
        if problem is not None:
            raise PlainError(
                400, f"Invalid URL: Cannot parse `deployment` with value `{value}`: {problem}"
            )
        return value

    async def _list_deployments(self, req: Request) -> Response:
        registry = self.holder.current
        return json_response(
            200, {"deployments": [render_deployment(d) for d in registry.deployments.values()]}
        )

    async def _get_deployment(self, req: Request) -> Response:
        dep_id = self._deployment_id(req)
        try:
            dep = self.holder.current.deployment(dep_id)
        except DeploymentNotFound as e:
            raise AdminError(404, str(e)) from None
        return json_response(200, render_detailed_deployment(dep))

    async def _delete_deployment(self, req: Request) -> Response:
        dep_id = self._deployment_id(req)
        force: bool | None = None
        for key, value in req.query:
            if key == "force":
                if value not in ("true", "false"):
                    raise PlainError(
                        400,
                        "Failed to deserialize query string: force: provided string was not "
                        "`true` or `false`",
                    )
                force = value == "true"
        if not force:
            # Only forced deletion exists officially; the rest is "not implemented".
            return Response(501)
        async with self._lock:
            registry = self.holder.current
            try:
                updated = registry.remove_deployment(dep_id)
            except DeploymentNotFound:
                raise AdminError(
                    404, f"not found in the schema registry: deployment with id '{dep_id}'"
                ) from None
            await self._commit(updated)
        _log_deployment("Deployment removed", registry.deployments[dep_id])
        return Response(202)

    async def _update_deployment(self, req: Request) -> Response:
        dep_id = self._deployment_id(req)
        body = read_json_body(req, parse_update_request)
        if "arn" in body:
            raise discovery_mod.discovery_error(
                "META0003",
                f"error when calling '{body['arn']}': Lambda deployments are not supported "
                "by pyrestate",
            )
        try:
            dep = self.holder.current.deployment(dep_id)
        except DeploymentNotFound as e:
            raise AdminError(404, str(e)) from None
        if all(body.get(k) is None for k in ("uri", "additional_headers", "use_http_11")):
            return json_response(200, render_detailed_deployment(dep))  # nothing to change
        uri = body.get("uri") or dep.uri
        if uri_problem(uri) == "relative":
            raise invalid_field(
                "uri", f"The provided uri {uri} is not absolute, only absolute URIs can be used."
            )
        headers = body.get("additional_headers")
        if headers is None:
            headers = dict(dep.additional_headers)
        use_http_11 = body.get("use_http_11")
        if use_http_11 is None:
            use_http_11 = dep.http_version == "HTTP/1.1"
        discovered = await self._discover(uri, use_http_11=use_http_11, additional_headers=headers)
        async with self._lock:
            try:
                updated, changed = self.holder.current.update_deployment(
                    dep_id,
                    uri=uri,
                    discovered=discovered,
                    additional_headers=headers,
                    overwrite=bool(body.get("overwrite")),
                )
            except DeploymentNotFound as e:  # removed while it was being discovered
                raise AdminError(404, str(e)) from None
            if not body.get("dry_run"):
                await self._commit(updated)
                _log_deployment("Deployment updated", changed)
        return json_response(200, render_detailed_deployment(changed))

    async def _create_deployment(self, req: Request) -> Response:
        parsed = read_json_body(req, parse_register_request)
        if not isinstance(parsed, RegisterRequest):
            raise discovery_mod.discovery_error(
                "META0003",
                f"error when calling '{parsed['arn']}': Lambda deployments are not supported "
                "by pyrestate",
            )
        if uri_problem(parsed.uri) == "relative":
            raise invalid_field(
                "uri",
                f"The provided uri {parsed.uri} is not absolute, only absolute URIs can be used.",
            )
        if parsed.auth:
            raise invalid_field("auth", "per-deployment authentication is not supported")

        v2 = req.api_version == 2
        force = parsed.force if parsed.force is not None else v2
        allow_breaking = force or parsed.breaking

        if not force:
            existing = self.holder.current.find_deployment(parsed.uri)
            if existing is not None:
                return self._registered("Unchanged", existing, v2)

        discovered = await self._discover(
            parsed.uri,
            use_http_11=parsed.use_http_11,
            additional_headers=parsed.additional_headers,
        )
        async with self._lock:
            result, updated, dep = self.holder.current.add_deployment(
                uri=parsed.uri,
                discovered=discovered,
                new_id=new_deployment_id(self._clock_ms(), self._random80()),
                now_ms=self._clock_ms(),
                additional_headers=parsed.additional_headers,
                metadata=parsed.metadata,
                overwrite=force,
                allow_breaking=allow_breaking,
            )
            if result != "Unchanged" and not parsed.dry_run:
                await self._commit(updated)
                _log_deployment(_REGISTERED[result], dep)
        return self._registered(result, dep, v2)

    def _registered(self, result: str, dep: Deployment, v2: bool) -> Response:
        if result == "Created":
            status = 201
        elif v2:
            # Admin API v2 semantics: re-registration without force is a conflict.
            if result == "Unchanged":
                raise AdminError(409, f"Conflict: deployment {dep.id} already exists")
            status = 201
        else:
            status = 200
        return json_response(
            status, render_register_response(dep), [("location", f"deployments/{dep.id}")]
        )

    async def _commit(self, updated: Registry) -> None:
        # Durable first, visible second: nobody sees a registry that is not saved.
        await self._save(updated)
        self.holder.current = updated

    # --- services

    def _service_or_404(self, name: str) -> ServiceSchema:
        try:
            return self.holder.current.service(name)
        except ServiceNotFound:
            raise AdminError(404, f"The requested service '{name}' does not exist") from None

    async def _list_services(self, req: Request) -> Response:
        registry = self.holder.current
        services = [render_service(s, _protocol_of(registry, s)) for s in registry.services()]
        return json_response(200, {"services": services})

    async def _get_service(self, req: Request) -> Response:
        name = req.params["service"]
        svc = self._service_or_404(name)
        return json_response(200, render_service(svc, _protocol_of(self.holder.current, svc)))

    async def _modify_service(self, req: Request) -> Response:
        name = req.params["service"]
        changes = read_json_body(req, parse_modify_service)
        async with self._lock:
            self._service_or_404(name)
            if changes:
                await self._commit(self.holder.current.modify_service(name, **changes))
        return await self._get_service(req)

    async def _service_openapi(self, req: Request) -> Response:
        svc = self._service_or_404(req.params["service"])
        body = service_openapi.openapi_body(svc, self._ingress_url)
        return Response(200, body, [("content-type", "application/json")])

    async def _list_handlers(self, req: Request) -> Response:
        name = req.params["service"]
        registry = self.holder.current
        svc = self._service_or_404(name)
        protocol = _protocol_of(registry, svc)
        handlers = [render_handler(h, protocol) for h in svc.handlers.values()]
        return json_response(200, {"handlers": handlers})

    async def _get_handler(self, req: Request) -> Response:
        name, handler = req.params["service"], req.params["handler"]
        registry = self.holder.current
        try:
            svc, h = registry.resolve(name, handler)
        except LookupError:
            raise AdminError(
                404, f"The requested handler '{handler}' on service '{name}' does not exist"
            ) from None
        return json_response(200, render_handler(h, _protocol_of(registry, svc)))


async def overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer to a request over the in-flight limit (see `pyrestate.http_front`)."""
    body = json.dumps({"message": "too many requests in flight, retry later", "restate_code": None})
    headers = [
        (b"content-type", b"application/json"),
        (b"retry-after", b"1"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})


# PATCH /services/{name} fields that hold durations, and the registry's names for them.
_MODIFIABLE_DURATIONS = {
    "idempotency_retention": "idempotency_retention_ms",
    "workflow_completion_retention": "workflow_completion_retention_ms",
    "journal_retention": "journal_retention_ms",
    "inactivity_timeout": "inactivity_timeout_ms",
    "abort_timeout": "abort_timeout_ms",
}


# A registration's log line, by its result: a new deployment, or one that replaced the
# deployment at the same address (`force`).
_REGISTERED = {"Created": "Deployment registered", "Overwritten": "Deployment overwritten"}


def _log_deployment(message: str, dep: Deployment) -> None:
    # Never the additional headers: their values are credentials as often as not.
    fields = {
        "restate.deployment.id": dep.id,
        "restate.deployment.address": redact_uri(dep.uri),
        "restate.deployment.services": sorted(dep.services),
    }
    log.info(message, extra={"fields": fields})


def parse_modify_service(value: Any) -> dict[str, Any]:
    """The settings a ``PATCH /services/{name}`` body changes (absent and null: none)."""

    def refuse(reason: str) -> PlainError:
        return PlainError(
            422, f"Failed to deserialize the JSON body into the target type: {reason}"
        )

    if not isinstance(value, dict):
        raise refuse("invalid type: expected struct ModifyServiceRequest")
    changes: dict[str, Any] = {}
    public = value.get("public")
    if public is not None:
        if not isinstance(public, bool):
            raise refuse(f"public: invalid type: {json.dumps(public)}, expected a boolean")
        changes["public"] = public
    for field, target in _MODIFIABLE_DURATIONS.items():
        text = value.get(field)
        if text is None:
            continue
        if not isinstance(text, str):
            raise refuse(f"{field}: invalid type: {json.dumps(text)}, expected a duration")
        try:
            changes[target] = duration_ms(field, parse_duration_ms(text))
        except (DurationError, OutOfRange) as e:
            raise refuse(f"{field}: {e}") from None
    return changes


def parse_update_request(value: Any) -> dict[str, Any]:
    """A ``PATCH /deployments/{id}`` body, its fields checked (422 as the official)."""
    kinds: dict[str, type | tuple[type, ...]] = {
        "uri": str,
        "arn": str,
        "assume_role_arn": str,
        "additional_headers": dict,
        "use_http_11": bool,
        "overwrite": bool,
        "dry_run": bool,
    }
    if not isinstance(value, dict):
        raise PlainError(422, _UPDATE_UNTAGGED)
    for name, kind in kinds.items():
        field = value.get(name)
        if field is not None and not isinstance(field, kind):
            raise PlainError(422, _UPDATE_UNTAGGED)
    headers = value.get("additional_headers")
    if headers is not None and not all(isinstance(v, str) for v in headers.values()):
        raise PlainError(422, _UPDATE_UNTAGGED)
    return value


_UPDATE_UNTAGGED = (
    "Failed to deserialize the JSON body into the target type: data did not match any "
    "variant of untagged enum UpdateDeploymentRequest"
)


def _protocol_of(registry: Registry, svc: ServiceSchema) -> ProtocolType | None:
    dep = registry.deployments.get(svc.deployment_id)
    return None if dep is None else dep.protocol_type
