"""Service revisions from decoded manifest services, refusing what the official refuses."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from pyrestate.admin.errors import schema_error
from pyrestate.admin.model import (
    HandlerSchema,
    HandlerType,
    RetryOverrides,
    ServiceSchema,
    ServiceType,
)
from pyrestate.admin.payload_rules import input_rules, output_rules

SERVICE_TYPES: dict[str, ServiceType] = {
    "SERVICE": "Service",
    "VIRTUAL_OBJECT": "VirtualObject",
    "WORKFLOW": "Workflow",
}
_HANDLER_TYPE_NAMES = {"EXCLUSIVE": "Exclusive", "SHARED": "Shared", "WORKFLOW": "Workflow"}
# (service type, declared handler type) -> effective handler type; others are refused.
_HANDLER_TYPES: dict[tuple[ServiceType, str | None], HandlerType | None] = {
    ("Service", None): None,
    ("Service", "SHARED"): None,
    ("VirtualObject", None): "Exclusive",
    ("VirtualObject", "EXCLUSIVE"): "Exclusive",
    ("VirtualObject", "SHARED"): "Shared",
    ("Workflow", None): "Shared",
    ("Workflow", "SHARED"): "Shared",
    ("Workflow", "WORKFLOW"): "Workflow",
}


def check_service_name(name: str) -> None:
    lower = name.lower()
    if lower.startswith("restate") or lower == "openapi":
        raise schema_error(
            400, f"cannot insert/modify service '{name}' as it contains a reserved name", "META0005"
        )


def _f32(value: float) -> float:
    """The value as the official server stores it (f32), printed shortest."""
    try:
        single = struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return value
    for precision in range(1, 10):
        candidate = float(f"{single:.{precision}g}")
        if struct.unpack("f", struct.pack("f", candidate))[0] == single:
            return candidate
    return single


def _options(m: Mapping[str, Any]) -> dict[str, Any]:
    """The settings services and handlers both declare, by their schema field names."""
    attempts = m.get("retryPolicyMaxAttempts")
    factor = m.get("retryPolicyExponentiationFactor")
    on_max = m.get("retryPolicyOnMaxAttempts")
    retry = RetryOverrides(
        initial_interval_ms=m.get("retryPolicyInitialInterval"),
        exponentiation_factor=None if factor is None else _f32(factor),
        # Zero attempts means "just the first one", as officially.
        max_attempts=None if attempts is None else max(attempts, 1),
        max_interval_ms=m.get("retryPolicyMaxInterval"),
        on_max_attempts=None if on_max is None else ("Pause" if on_max == "PAUSE" else "Kill"),
    )
    return {
        "documentation": m.get("documentation"),
        "metadata": dict(m.get("metadata") or {}),
        "idempotency_retention_ms": m.get("idempotencyRetention"),
        "journal_retention_ms": m.get("journalRetention"),
        "inactivity_timeout_ms": m.get("inactivityTimeout"),
        "abort_timeout_ms": m.get("abortTimeout"),
        "retry": retry,
    }


def _handler(
    service: str, service_ty: ServiceType, service_public: bool, m: Mapping[str, Any]
) -> HandlerSchema:
    name = m["name"]
    declared = m.get("ty")
    if (service_ty, declared) not in _HANDLER_TYPES:
        shown = "None" if declared is None else f"Some({_HANDLER_TYPE_NAMES[declared]})"
        raise schema_error(
            400,
            f"invalid combination of service type and handler type '({service_ty}, {shown})'",
        )
    ty = _HANDLER_TYPES[service_ty, declared]
    if m.get("workflowCompletionRetention") is not None and ty != "Workflow":
        raise schema_error(
            400, f"{name} sets the workflow_completion_retention, but it's not a WORKFLOW handler"
        )
    if m.get("idempotencyRetention") is not None and ty == "Workflow":
        raise schema_error(
            400, f"{name} sets the idempotency_retention, but it's a WORKFLOW handler"
        )
    private = m.get("ingressPrivate")
    if not service_public and private is False:
        raise schema_error(
            400,
            f"The service {service} is private, but the {name} is explicitly set as public. "
            "This is not supported. Please make the service public, and hide the individual "
            "handlers",
        )
    public_override = None if private is None else not private
    return HandlerSchema(
        name=name,
        ty=ty,
        public=service_public if public_override is None else public_override,
        input_rules=input_rules(service, name, m.get("input")),
        output_rules=output_rules(service, name, m.get("output")),
        public_override=public_override,
        workflow_completion_retention_ms=m.get("workflowCompletionRetention"),
        enable_lazy_state=m.get("enableLazyState"),
        **_options(m),
    )


def build_service(m: Mapping[str, Any], deployment_id: str, revision: int) -> ServiceSchema:
    """A service revision from a decoded manifest service; raises AdminError (400)."""
    name = m["name"]
    ty = SERVICE_TYPES[m["ty"]]
    private = m.get("ingressPrivate")
    public = True if private is None else not private
    return ServiceSchema(
        name=name,
        ty=ty,
        handlers={h["name"]: _handler(name, ty, public, h) for h in m["handlers"]},
        deployment_id=deployment_id,
        revision=revision,
        public=public,
        enable_lazy_state_override=m.get("enableLazyState"),
        **_options(m),
    )
