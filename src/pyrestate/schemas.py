"""The registry as the ingress and the invoker see it: routes, targets, deployments."""

from __future__ import annotations

from pyrestate.admin.registry import HandlerSchema, InvocationOptions, Registry, ServiceSchema
from pyrestate.core.commands import Retention, RetryPolicy
from pyrestate.core.model import HandlerType, ServiceType, Target
from pyrestate.ingress.app import Route
from pyrestate.invoker.service import DeploymentInfo, ServiceConfig

_SERVICE_TYPES = {
    "Service": ServiceType.SERVICE,
    "VirtualObject": ServiceType.VIRTUAL_OBJECT,
    "Workflow": ServiceType.WORKFLOW,
}
_HANDLER_TYPES = {
    "Exclusive": HandlerType.EXCLUSIVE,
    "Shared": HandlerType.SHARED,
    "Workflow": HandlerType.WORKFLOW,
}


class RegistryHolder:
    """The current registry; replaced whole on every change, so readers never see halves."""

    def __init__(self, registry: Registry) -> None:
        self.current = registry


def _handler_type(service: ServiceSchema, handler: HandlerSchema) -> HandlerType | None:
    if handler.ty is not None:
        return _HANDLER_TYPES[handler.ty]
    if service.ty == "VirtualObject":
        return HandlerType.EXCLUSIVE
    return None


class SchemaView:
    def __init__(self, holder: RegistryHolder) -> None:
        self._holder = holder
        # Routes and configs derived from one registry value; a new registry starts over.
        self._cached_for: Registry | None = None
        self._routes: dict[tuple[str, str], Route] = {}
        self._configs: dict[tuple[str, str], ServiceConfig] = {}

    def _cache(self) -> None:
        if self._cached_for is not self._holder.current:
            self._cached_for = self._holder.current
            self._routes.clear()
            self._configs.clear()

    # --- ingress

    def service_names(self) -> list[str]:
        return [svc.name for svc in self._holder.current.services()]

    def is_keyed(self, service: str) -> bool:
        return self._holder.current.service(service).ty != "Service"

    def route(self, service: str, handler: str) -> Route:
        self._cache()
        route = self._routes.get((service, handler))
        if route is None:
            route = self._routes[(service, handler)] = self._make_route(service, handler)
        return route

    def _make_route(self, service: str, handler: str) -> Route:
        svc, h = self._holder.current.resolve(service, handler)
        keyed = svc.ty != "Service"
        service_type = _SERVICE_TYPES[svc.ty]
        handler_type = _handler_type(svc, h)

        def target_for(key: str | None) -> Target:
            return Target(svc.name, h.name, key if keyed else None, service_type, handler_type)

        return Route(
            public=h.public,
            output_content_type=h.output_content_type,
            retention=_retention(svc.handler_options(h.name)),
            target_for=target_for,
            check_input=h.check_input,
        )

    # --- invoker

    def target(self, service: str, handler: str, key: str | None) -> Target:
        svc, h = self._holder.current.resolve(service, handler)
        keyed = svc.ty != "Service"
        if keyed and key is None:
            raise LookupError(f"service {service} is keyed: a call needs a key")
        return Target(
            svc.name,
            h.name,
            key if keyed else None,
            _SERVICE_TYPES[svc.ty],
            _handler_type(svc, h),
        )

    def service_config(self, service: str, handler: str) -> ServiceConfig:
        self._cache()
        config = self._configs.get((service, handler))
        if config is None:
            config = self._configs[(service, handler)] = self._make_config(service, handler)
        return config

    def _make_config(self, service: str, handler: str) -> ServiceConfig:
        svc, _ = self._holder.current.resolve(service, handler)
        options = svc.handler_options(handler)
        p = options.retry_policy
        defaults = ServiceConfig()
        return ServiceConfig(
            retry_policy=RetryPolicy(
                initial_interval_ms=int(p.initial_interval_s * 1000),
                factor=p.exponentiation_factor,
                max_interval_ms=(
                    int(p.max_interval_s * 1000)
                    if p.max_interval_s is not None
                    else defaults.retry_policy.max_interval_ms
                ),
                max_attempts=p.max_attempts,
                pause_on_max_attempts=p.on_max_attempts == "Pause",
            ),
            inactivity_timeout_s=options.inactivity_timeout_s or defaults.inactivity_timeout_s,
            abort_timeout_s=options.abort_timeout_s or defaults.abort_timeout_s,
            retention=_retention(options),
            lazy_state=options.enable_lazy_state,
        )

    def deployment_for(self, service: str, pinned: str | None) -> DeploymentInfo:
        registry = self._holder.current
        dep_id = pinned if pinned is not None else registry.service(service).deployment_id
        dep = registry.deployment(dep_id)
        return DeploymentInfo(
            id=dep.id,
            uri=dep.uri,
            http_version=dep.http_version,
            bidi=dep.protocol_type == "BidiStream",
            protocol_version=dep.protocol_version,
            additional_headers=tuple(dep.additional_headers.items()),
        )


def _retention(options: InvocationOptions) -> Retention:
    return Retention(
        completion_ms=int(options.completion_retention_s * 1000),
        journal_ms=int(options.journal_retention_s * 1000),
    )
