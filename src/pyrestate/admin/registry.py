"""The registry of deployments and services: a pure, immutable value.

Registering or removing a deployment returns a new `Registry`, which the admin API
persists and then swaps in whole, so readers (ingress, invoker) only ever hold a
consistent snapshot.

The rules mirror the official server 1.7.12, learned by running it:

- A deployment is identified by the authority and path of its URI (the scheme and the
  additional headers do not matter). Registering a known URI without ``force`` answers
  with the stored deployment, unchanged and without discovery; with ``force`` the
  deployment keeps its id and its services are replaced.
- Every service registered anew gets revision = latest revision + 1 (or 1). The latest
  revision of a service, across all deployments, is the one the ingress routes to.
- Changing a service's type needs ``breaking`` (or ``force``), else 409 META0006.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any, Literal

from pyrestate.admin.errors import (
    DeploymentNotFound,
    HandlerNotFound,
    ServiceNotFound,
    schema_error,
)
from pyrestate.admin.model import (
    SUPPORTED_PROTOCOL_VERSIONS,
    Deployment,
    DiscoveredEndpoint,
    HandlerSchema,
    InvocationOptions,
    ServiceSchema,
    normalize_uri,
)
from pyrestate.admin.schema_rules import SERVICE_TYPES, build_service, check_service_name

AddResult = Literal["Created", "Unchanged", "Overwritten"]


class Registry:
    """Deployments and their services; immutable, changed by returning a new Registry."""

    __slots__ = ("_latest", "deployments", "version")

    def __init__(self, deployments: Iterable[Deployment] = (), version: int = 0) -> None:
        self.deployments: Mapping[str, Deployment] = {d.id: d for d in deployments}
        self.version = version
        self._latest: dict[str, ServiceSchema] = {}
        for dep in self.deployments.values():
            for svc in dep.services.values():
                current = self._latest.get(svc.name)
                if current is None or current.revision < svc.revision:
                    self._latest[svc.name] = svc

    def service(self, name: str) -> ServiceSchema:
        """The latest revision of a service; raises ServiceNotFound."""
        svc = self._latest.get(name)
        if svc is None:
            raise ServiceNotFound(name)
        return svc

    def resolve(self, service: str, handler: str) -> tuple[ServiceSchema, HandlerSchema]:
        """The latest revision of a service and its handler; raises a LookupError."""
        svc = self.service(service)
        h = svc.handlers.get(handler)
        if h is None:
            raise HandlerNotFound(service, handler)
        return svc, h

    def deployment(self, deployment_id: str) -> Deployment:
        dep = self.deployments.get(deployment_id)
        if dep is None:
            raise DeploymentNotFound(deployment_id)
        return dep

    def services(self) -> list[ServiceSchema]:
        """The latest revision of every service."""
        return list(self._latest.values())

    def find_deployment(self, uri: str) -> Deployment | None:
        """The deployment registered for the same endpoint (newest if several)."""
        found = [d for d in self.deployments.values() if d.same_endpoint(uri)]
        return max(found, key=lambda d: d.created_at_ms) if found else None

    def add_deployment(
        self,
        *,
        uri: str,
        discovered: DiscoveredEndpoint,
        new_id: str,
        now_ms: int,
        additional_headers: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        overwrite: bool = False,
        allow_breaking: bool = False,
    ) -> tuple[AddResult, Registry, Deployment]:
        """Register a discovered deployment; raises AdminError on schema violations."""
        proposed: dict[str, Mapping[str, Any]] = {}
        for m in discovered.services:
            check_service_name(m["name"])
            proposed[m["name"]] = m

        existing = self.find_deployment(uri)
        result: AddResult = "Created"
        dep_id = new_id
        if existing is not None:
            if not overwrite:
                return "Unchanged", self, existing
            result = "Overwritten"
            dep_id = existing.id

        services: dict[str, ServiceSchema] = {}
        for name, m in proposed.items():
            previous = self._latest.get(name)
            if (
                previous is not None
                and previous.ty != SERVICE_TYPES[m["ty"]]
                and not allow_breaking
            ):
                raise schema_error(
                    409,
                    f"detected a new service revision for '{name}' changing the service type "
                    "from previous revision. Service type cannot be changed across revisions.",
                    "META0006",
                )
            revision = previous.revision + 1 if previous is not None else 1
            services[name] = build_service(m, dep_id, revision)

        deployment = Deployment(
            id=dep_id,
            uri=normalize_uri(uri),
            protocol_type=discovered.protocol_type,
            http_version=discovered.http_version,
            min_protocol_version=discovered.min_protocol_version,
            max_protocol_version=discovered.max_protocol_version,
            created_at_ms=now_ms,
            services=services,
            additional_headers={k.lower(): v for k, v in (additional_headers or {}).items()},
            metadata=dict(metadata or {}),
            sdk_version=discovered.sdk_version,
        )
        deployments = {**self.deployments, dep_id: deployment}
        return result, Registry(deployments.values(), self.version + 1), deployment

    def modify_service(
        self,
        name: str,
        *,
        public: bool | None = None,
        idempotency_retention_ms: int | None = None,
        workflow_completion_retention_ms: int | None = None,
        journal_retention_ms: int | None = None,
        inactivity_timeout_ms: int | None = None,
        abort_timeout_ms: int | None = None,
    ) -> Registry:
        """The operator's settings (``PATCH /services/{name}``) on the latest revision.

        Settings left None stay as they are; a handler's own setting still wins over the
        service's, as with the values from the manifest. Raises ServiceNotFound, or
        AdminError for a workflow retention on a service that is not a workflow.
        """
        svc = self.service(name)
        changes: dict[str, Any] = {
            field: value
            for field, value in (
                ("idempotency_retention_ms", idempotency_retention_ms),
                ("journal_retention_ms", journal_retention_ms),
                ("inactivity_timeout_ms", inactivity_timeout_ms),
                ("abort_timeout_ms", abort_timeout_ms),
                ("public", public),
            )
            if value is not None
        }
        handlers = dict(svc.handlers)
        if public is not None:
            for h in handlers.values():
                if h.public_override is None:
                    handlers[h.name] = replace(h, public=public)
        if workflow_completion_retention_ms is not None:
            if svc.ty != "Workflow":
                raise schema_error(
                    400,
                    f"Cannot set workflow_completion_retention for service '{name}': "
                    "it is not a workflow",
                )
            for h in list(handlers.values()):
                if h.ty == "Workflow":
                    handlers[h.name] = replace(
                        h, workflow_completion_retention_ms=workflow_completion_retention_ms
                    )
        changed = replace(svc, handlers=handlers, **changes)
        dep = self.deployment(svc.deployment_id)
        updated = replace(dep, services={**dep.services, name: changed})
        return Registry({**self.deployments, dep.id: updated}.values(), self.version + 1)

    def update_deployment(
        self,
        deployment_id: str,
        *,
        uri: str,
        discovered: DiscoveredEndpoint,
        additional_headers: Mapping[str, str],
        overwrite: bool,
    ) -> tuple[Registry, Deployment]:
        """A deployment moved (``PATCH /deployments/{id}``): new address and headers.

        Its services stay as they were unless ``overwrite``, which takes the discovered
        ones (keeping each service's revision). The endpoint must speak the same protocol
        versions. Raises DeploymentNotFound, or AdminError META0016.
        """
        dep = self.deployment(deployment_id)
        old = (dep.min_protocol_version, dep.max_protocol_version)
        new = (discovered.min_protocol_version, discovered.max_protocol_version)
        if old != new:
            raise schema_error(
                400,
                "an update deployment operation must provide an endpoint with the same "
                "services and handlers. The update tried to change the supported protocol "
                f"versions from {old[0]}..={old[1]} to {new[0]}..={new[1]}",
                "META0016",
            )
        services = dict(dep.services)
        if overwrite:
            services = {}
            for m in discovered.services:
                check_service_name(m["name"])
                previous = dep.services.get(m["name"]) or self._latest.get(m["name"])
                if m["name"] in dep.services:
                    revision = dep.services[m["name"]].revision
                else:
                    revision = previous.revision + 1 if previous is not None else 1
                services[m["name"]] = build_service(m, deployment_id, revision)
        updated = replace(
            dep,
            uri=normalize_uri(uri),
            protocol_type=discovered.protocol_type,
            http_version=discovered.http_version,
            additional_headers={k.lower(): v for k, v in additional_headers.items()},
            sdk_version=discovered.sdk_version,
            services=services,
        )
        deployments = {**self.deployments, deployment_id: updated}
        return Registry(deployments.values(), self.version + 1), updated

    def remove_deployment(self, deployment_id: str) -> Registry:
        if deployment_id not in self.deployments:
            raise DeploymentNotFound(deployment_id)
        rest = (d for d in self.deployments.values() if d.id != deployment_id)
        return Registry(rest, self.version + 1)

    def __repr__(self) -> str:
        return f"Registry(version={self.version}, deployments={list(self.deployments)})"


# What the ingress and the invoker (through pyrestate.schemas) import from here.
__all__ = [
    "SUPPORTED_PROTOCOL_VERSIONS",
    "DeploymentNotFound",
    "HandlerNotFound",
    "HandlerSchema",
    "InvocationOptions",
    "Registry",
    "ServiceNotFound",
    "ServiceSchema",
]
