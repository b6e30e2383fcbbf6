"""The schema model: deployments, service revisions, handlers and their settings.

All values are immutable. Settings are kept as declared (None = not set there); the
effective values, with the server defaults of the official configuration, are derived.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from pyrestate.admin.payload_rules import DEFAULT_INPUT_RULES, InputRule, OutputRules

# Service protocol versions pyrestate can speak with a deployment.
SUPPORTED_PROTOCOL_VERSIONS = range(5, 7)

ServiceType = Literal["Service", "VirtualObject", "Workflow"]
HandlerType = Literal["Exclusive", "Shared", "Workflow"]
ProtocolType = Literal["BidiStream", "RequestResponse"]
HttpVersion = Literal["HTTP/2.0", "HTTP/1.1"]
OnMaxAttempts = Literal["Pause", "Kill"]

# Server defaults, in milliseconds.
DEFAULT_IDEMPOTENCY_RETENTION_MS = 24 * 3600 * 1000
DEFAULT_JOURNAL_RETENTION_MS = 24 * 3600 * 1000
DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS = 24 * 3600 * 1000
DEFAULT_INACTIVITY_TIMEOUT_MS = 60 * 1000
DEFAULT_ABORT_TIMEOUT_MS = 600 * 1000


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def _first(*values: int | None) -> Any:
    return next((v for v in values if v is not None), None)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """An effective retry policy."""

    initial_interval_ms: int
    exponentiation_factor: float
    max_attempts: int
    max_interval_ms: int
    on_max_attempts: OnMaxAttempts

    @property
    def initial_interval_s(self) -> float:
        return self.initial_interval_ms / 1000

    @property
    def max_interval_s(self) -> float:
        return self.max_interval_ms / 1000


DEFAULT_RETRY_POLICY = RetryPolicy(500, 2.0, 70, 60_000, "Pause")


@dataclass(frozen=True, slots=True)
class RetryOverrides:
    """Retry settings a service or handler declares; None = not set there."""

    initial_interval_ms: int | None = None
    exponentiation_factor: float | None = None
    max_attempts: int | None = None
    max_interval_ms: int | None = None
    on_max_attempts: OnMaxAttempts | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def apply_to(self, base: RetryPolicy) -> RetryPolicy:
        return replace(base, **self.to_json())


@dataclass(frozen=True, slots=True)
class InvocationOptions:
    """Per-handler settings for the engine. Timeouts None = the invoker's defaults."""

    public: bool
    completion_retention_s: float
    journal_retention_s: float
    inactivity_timeout_s: float | None
    abort_timeout_s: float | None
    enable_lazy_state: bool
    retry_policy: RetryPolicy


@dataclass(frozen=True, slots=True)
class HandlerSchema:
    name: str
    ty: HandlerType | None  # None for the handlers of plain services
    public: bool  # effective: the handler's own setting, else the service's
    input_rules: tuple[InputRule, ...] = DEFAULT_INPUT_RULES
    output_rules: OutputRules = field(default_factory=OutputRules)
    documentation: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    public_override: bool | None = None
    idempotency_retention_ms: int | None = None
    workflow_completion_retention_ms: int | None = None
    journal_retention_ms: int | None = None
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    enable_lazy_state: bool | None = None
    retry: RetryOverrides = RetryOverrides()

    def check_input(self, content_type: str | None, body: bytes) -> str | None:
        """None if the request body is acceptable, else the official 400 message."""
        problem = "Bad configuration of the input validation rules"
        for rule in self.input_rules:
            problem = rule.check(content_type, body)
            if problem is None:
                return None
        return f"input validation error: {problem}"

    def output_content_type(self, output_is_empty: bool) -> str | None:
        """The content-type of a response with this handler's output."""
        rules = self.output_rules
        if output_is_empty and not rules.set_content_type_if_empty:
            return None
        return rules.content_type


@dataclass(frozen=True, slots=True)
class ServiceSchema:
    """One revision of a service, as exposed by one deployment."""

    name: str
    ty: ServiceType
    handlers: Mapping[str, HandlerSchema]
    deployment_id: str
    revision: int
    public: bool = True
    documentation: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    idempotency_retention_ms: int | None = None
    journal_retention_ms: int | None = None
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    enable_lazy_state_override: bool | None = None
    retry: RetryOverrides = RetryOverrides()

    @property
    def effective_idempotency_retention_ms(self) -> int:
        return _first(self.idempotency_retention_ms, DEFAULT_IDEMPOTENCY_RETENTION_MS)

    @property
    def effective_journal_retention_ms(self) -> int:
        return _first(self.journal_retention_ms, DEFAULT_JOURNAL_RETENTION_MS)

    @property
    def effective_workflow_completion_retention_ms(self) -> int | None:
        """Only workflows have one: their workflow handler's, or the default."""
        if self.ty != "Workflow":
            return None
        declared = (h.workflow_completion_retention_ms for h in self.handlers.values())
        return _first(*declared, DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS)

    @property
    def effective_inactivity_timeout_ms(self) -> int:
        return _first(self.inactivity_timeout_ms, DEFAULT_INACTIVITY_TIMEOUT_MS)

    @property
    def effective_abort_timeout_ms(self) -> int:
        return _first(self.abort_timeout_ms, DEFAULT_ABORT_TIMEOUT_MS)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The service-level policy: server default with the service's overrides."""
        return self.retry.apply_to(DEFAULT_RETRY_POLICY)

    def handler_options(self, handler: str) -> InvocationOptions:
        """What running an invocation of ``handler`` on this revision needs to know."""
        h = self.handlers[handler]
        if h.ty == "Workflow":
            completion = _first(
                h.workflow_completion_retention_ms, DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS
            )
        else:
            completion = _first(h.idempotency_retention_ms, self.effective_idempotency_retention_ms)
        journal = _first(h.journal_retention_ms, self.effective_journal_retention_ms)
        # The official keeps a journal no longer than the completion it belongs to.
        journal = min(journal, completion)
        return InvocationOptions(
            public=h.public,
            completion_retention_s=completion / 1000,
            journal_retention_s=journal / 1000,
            inactivity_timeout_s=_seconds(
                _first(h.inactivity_timeout_ms, self.inactivity_timeout_ms)
            ),
            abort_timeout_s=_seconds(_first(h.abort_timeout_ms, self.abort_timeout_ms)),
            enable_lazy_state=bool(_first(h.enable_lazy_state, self.enable_lazy_state_override)),
            retry_policy=h.retry.apply_to(self.retry_policy),
        )


def negotiate_protocol_version(min_version: int, max_version: int) -> int:
    supported = SUPPORTED_PROTOCOL_VERSIONS
    return max(min(max_version, supported[-1]), supported[0])


def protocol_versions_acceptable(min_version: int, max_version: int) -> bool:
    supported = SUPPORTED_PROTOCOL_VERSIONS
    return min_version <= supported[-1] and max_version >= supported[0]


def normalize_uri(uri: str) -> str:
    """How the official server prints a URI: an empty path becomes ``/``."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    if not tail.startswith("/"):
        tail = "/" + tail
    return f"{scheme}://{authority}{tail}"


def _endpoint_key(uri: str) -> tuple[str, str]:
    """Authority (case-insensitive) and path: what makes two URIs the same deployment."""
    _, _, rest = uri.partition("://")
    authority, slash, path = rest.partition("/")
    path = "/" + path.split("?", 1)[0].split("#", 1)[0] if slash else "/"
    return authority.rpartition("@")[2].lower(), path


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    uri: str
    protocol_type: ProtocolType
    http_version: HttpVersion
    min_protocol_version: int
    max_protocol_version: int
    created_at_ms: int
    services: Mapping[str, ServiceSchema]
    additional_headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # secrets
    metadata: Mapping[str, str] = field(default_factory=dict)
    sdk_version: str | None = None

    @property
    def protocol_version(self) -> int:
        """The service protocol version pyrestate speaks with this deployment."""
        return negotiate_protocol_version(self.min_protocol_version, self.max_protocol_version)

    def same_endpoint(self, uri: str) -> bool:
        return _endpoint_key(self.uri) == _endpoint_key(uri)


@dataclass(frozen=True, slots=True)
class DiscoveredEndpoint:
    """What discovery learned about a deployment; pure data for `Registry.add_deployment`."""

    protocol_type: ProtocolType
    http_version: HttpVersion
    min_protocol_version: int
    max_protocol_version: int
    services: tuple[Mapping[str, Any], ...]  # decoded manifest services
    sdk_version: str | None = None
