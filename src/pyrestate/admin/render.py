"""Deployments, services and handlers in the official admin API's JSON shapes.

Fields come in the order the official server prints them, optional ones only when set.
"""

from __future__ import annotations

from typing import Any

from pyrestate.admin.model import Deployment, HandlerSchema, ProtocolType, ServiceSchema
from pyrestate.admin.payload_rules import describe_input
from pyrestate.official_format import format_duration, format_timestamp


def _not_applied(what: str, ms: int) -> dict[str, str]:
    """The note that a Request/Response deployment ignores an inactivity timeout."""
    return {
        "code": "RT0021",
        "message": f"The configured inactivity_timeout {format_duration(ms)} will not be "
        f"applied because the {what} is exposed in Request/Response mode.",
    }


def render_handler(h: HandlerSchema, protocol_type: ProtocolType | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": h.name}
    if h.ty is not None:
        out["ty"] = h.ty
    if h.documentation is not None:
        out["documentation"] = h.documentation
    if h.metadata:
        out["metadata"] = dict(h.metadata)
    if h.idempotency_retention_ms is not None:
        out["idempotency_retention"] = format_duration(h.idempotency_retention_ms)
    if h.journal_retention_ms is not None:
        out["journal_retention"] = format_duration(h.journal_retention_ms)
    info = []
    if h.inactivity_timeout_ms is not None:
        if protocol_type == "RequestResponse":
            info.append(_not_applied("handler", h.inactivity_timeout_ms))
        else:
            out["inactivity_timeout"] = format_duration(h.inactivity_timeout_ms)
    if h.abort_timeout_ms is not None:
        out["abort_timeout"] = format_duration(h.abort_timeout_ms)
    if h.enable_lazy_state is not None:
        out["enable_lazy_state"] = h.enable_lazy_state
    out["public"] = h.public
    out["input_description"] = describe_input(h.input_rules)
    out["output_description"] = str(h.output_rules)
    input_schema = next((r.json_schema for r in h.input_rules if r.kind == "json"), None)
    if input_schema is not None:
        out["input_json_schema"] = input_schema
    if h.output_rules.json_schema is not None:
        out["output_json_schema"] = h.output_rules.json_schema
    r = h.retry
    retry: dict[str, Any] = {}
    if r.initial_interval_ms is not None:
        retry["initial_interval"] = format_duration(r.initial_interval_ms)
    if r.exponentiation_factor is not None:
        retry["exponentiation_factor"] = r.exponentiation_factor
    retry["max_attempts"] = r.max_attempts
    if r.max_interval_ms is not None:
        retry["max_interval"] = format_duration(r.max_interval_ms)
    if r.on_max_attempts is not None:
        retry["on_max_attempts"] = r.on_max_attempts
    out["retry_policy"] = retry
    if info:
        out["info"] = info
    return out


def render_service(s: ServiceSchema, protocol_type: ProtocolType | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": s.name,
        "ty": s.ty,
        "handlers": [render_handler(h, protocol_type) for h in s.handlers.values()],
    }
    if s.documentation is not None:
        out["documentation"] = s.documentation
    if s.metadata:
        out["metadata"] = dict(s.metadata)
    out["deployment_id"] = s.deployment_id
    out["revision"] = s.revision
    out["public"] = s.public
    out["idempotency_retention"] = format_duration(s.effective_idempotency_retention_ms)
    completion = s.effective_workflow_completion_retention_ms
    if completion is not None:
        out["workflow_completion_retention"] = format_duration(completion)
    out["journal_retention"] = format_duration(s.effective_journal_retention_ms)
    info = []
    if protocol_type == "RequestResponse":
        out["inactivity_timeout"] = format_duration(0)
        if s.inactivity_timeout_ms is not None:
            info.append(_not_applied("service", s.inactivity_timeout_ms))
    else:
        out["inactivity_timeout"] = format_duration(s.effective_inactivity_timeout_ms)
    out["abort_timeout"] = format_duration(s.effective_abort_timeout_ms)
    out["enable_lazy_state"] = bool(s.enable_lazy_state_override)
    p = s.retry_policy
    out["retry_policy"] = {
        "initial_interval": format_duration(p.initial_interval_ms),
        "exponentiation_factor": float(p.exponentiation_factor),
        "max_attempts": p.max_attempts,
        "max_interval": format_duration(p.max_interval_ms),
        "on_max_attempts": p.on_max_attempts,
    }
    if info:
        out["info"] = info
    return out


def _deployment_head(dep: Deployment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": dep.id,
        "uri": dep.uri,
        "protocol_type": dep.protocol_type,
        "http_version": dep.http_version,
    }
    if dep.additional_headers:
        out["additional_headers"] = dict(dep.additional_headers)
    if dep.metadata:
        out["metadata"] = dict(dep.metadata)
    out["created_at"] = format_timestamp(dep.created_at_ms)
    out["min_protocol_version"] = dep.min_protocol_version
    out["max_protocol_version"] = dep.max_protocol_version
    if dep.sdk_version is not None:
        out["sdk_version"] = dep.sdk_version
    return out


def render_deployment(dep: Deployment) -> dict[str, Any]:
    """An entry of ``GET /deployments``."""
    out = _deployment_head(dep)
    out["services"] = [{"name": s.name, "revision": s.revision} for s in dep.services.values()]
    return out


def render_detailed_deployment(dep: Deployment) -> dict[str, Any]:
    """``GET /deployments/{id}``."""
    out = _deployment_head(dep)
    out["services"] = [render_service(s, dep.protocol_type) for s in dep.services.values()]
    return out


def render_register_response(dep: Deployment) -> dict[str, Any]:
    """The body of ``POST /deployments``."""
    out: dict[str, Any] = {
        "id": dep.id,
        "services": [render_service(s, dep.protocol_type) for s in dep.services.values()],
        "min_protocol_version": dep.min_protocol_version,
        "max_protocol_version": dep.max_protocol_version,
    }
    if dep.sdk_version is not None:
        out["sdk_version"] = dep.sdk_version
    return out
