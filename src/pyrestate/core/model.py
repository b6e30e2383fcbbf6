"""Durable records of a partition: invocation status, journal entries, timers, targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from pyrestate.core.ids import InvocationId, new_invocation_id

CALL_COMPLETION = 0x800D  # the service protocol's CallCompletionNotificationMessage


class ServiceType(StrEnum):
    SERVICE = "service"
    VIRTUAL_OBJECT = "virtual_object"
    WORKFLOW = "workflow"


class HandlerType(StrEnum):
    EXCLUSIVE = "exclusive"
    SHARED = "shared"
    WORKFLOW = "workflow"


class Status(StrEnum):
    """Invocation status names as sys_invocation shows them."""

    SCHEDULED = "scheduled"  # delayed, waiting for its execution time
    INBOXED = "inboxed"  # waiting for its object key's lock
    INVOKED = "invoked"  # an attempt is running (or about to)
    SUSPENDED = "suspended"  # waiting for a notification, nothing running
    BACKING_OFF = "backing-off"  # failed attempt, retry timer armed
    PAUSED = "paused"  # retries exhausted, waits for an operator
    COMPLETED = "completed"


ACTIVE_STATUSES = frozenset({Status.INVOKED, Status.SUSPENDED, Status.BACKING_OFF, Status.PAUSED})


@dataclass(frozen=True, slots=True)
class Target:
    service: str
    handler: str
    key: str | None  # set for virtual objects and workflows
    service_type: ServiceType
    handler_type: HandlerType | None

    @property
    def holds_lock(self) -> bool:
        """Exclusive handlers (and a workflow's run handler) own their key while running."""
        return self.key is not None and self.handler_type in (
            HandlerType.EXCLUSIVE,
            HandlerType.WORKFLOW,
        )

    @property
    def object_ref(self) -> tuple[str, str] | None:
        return None if self.key is None else (self.service, self.key)

    def new_invocation_id(self, entropy: bytes, idempotency_key: str | None = None) -> InvocationId:
        """The id of a new invocation of this target: derived from the workflow key or the
        idempotency key when there is one (so duplicates find it), else from ``entropy``."""
        return new_invocation_id(
            entropy,
            service=self.service,
            handler=self.handler,
            key=self.key,
            idempotency_key=idempotency_key,
            workflow_run=self.handler_type is HandlerType.WORKFLOW,
        )

    def __str__(self) -> str:
        if self.key is None:
            return f"{self.service}/{self.handler}"
        return f"{self.service}/{self.key}/{self.handler}"


@dataclass(frozen=True, slots=True)
class Failure:
    code: int
    message: str
    # Terminal errors carry key/value metadata (protocol V6) to whoever sees the failure.
    metadata: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Output:
    """The result of an invocation or of a call: a value, or a terminal failure."""

    value: bytes | None = None
    failure: Failure | None = None


@dataclass(frozen=True, slots=True)
class CallerRef:
    """Who waits for an invocation's result inside another invocation's journal."""

    invocation_id: InvocationId
    completion_id: int
    life: int = 0  # the caller's created_at: a result must not reach a later life of its id
    # The completion's message type: a call's result, an attach's, a promise's value.
    kind: int = CALL_COMPLETION


@dataclass(slots=True)
class InvocationStatus:
    id: InvocationId
    target: Target
    status: Status
    created_at: int  # epoch ms, as every time here
    modified_at: int
    headers: tuple[tuple[str, str], ...] = ()
    idempotency_key: str | None = None
    subscription_id: str | None = None  # the Kafka subscription that started it
    trace: str | None = None  # its place in a distributed trace (opaque to the core)
    # Completions to deliver the result to (a call, plus idempotent duplicates of it).
    callers: tuple[CallerRef, ...] = ()
    execution_time: int | None = None  # for delayed invocations
    inbox_seq: int | None = None  # order in the key's inbox while inboxed
    running_at: int | None = None
    completed_at: int | None = None
    deployment_id: str | None = None  # pinned at the first attempt
    journal_length: int = 0
    command_count: int = 0
    attempt: int = 0  # increases with every attempt, also across restarts
    # Failed attempts since the SDK last stored a command (what StartMessage reports).
    retry_count: int = 0
    # Failed attempts since the invocation last started running (created or resumed): what
    # the retry policy's backoff and max attempts count, as the official invoker does.
    attempt_failures: int = 0
    last_progress_at: int | None = None  # when the SDK last stored a command
    next_retry_at: int | None = None
    last_failure: Failure | None = None
    # The command the SDK named with its failure, as JSON {"index", "name", "type"}.
    last_failure_related: str | None = None
    # What a suspended invocation waits for: completion ids and signal ids/names.
    waiting_completions: frozenset[int] = frozenset()
    waiting_signals: frozenset[int | str] = frozenset()
    # Notifications already in the journal, to resume at once on a stale suspension.
    completions_seen: set[int] = field(default_factory=set)
    signals_seen: set[int | str] = field(default_factory=set)
    output: Output | None = None
    # How long to keep the completed invocation (ms), from the service's schema.
    completion_retention: int = 0
    journal_retention: int = 0

    @property
    def is_completed(self) -> bool:
        return self.status is Status.COMPLETED


@dataclass(frozen=True, slots=True)
class StateMutation:
    """An operator replaces an object's state (admin API); applied when its key is free.

    ``version``: the state it was computed from (see ``state_version``); if the state has
    changed since, the mutation is dropped, as the official server does.
    """

    seq: int  # its place in the key's inbox, shared with inboxed invocations
    service: str
    key: str
    state: tuple[tuple[bytes, bytes], ...]
    version: str | None = None


PromiseKey = tuple[str, str, str]  # workflow name, workflow key, promise name


@dataclass(slots=True)
class Promise:
    """A workflow's durable promise: completed once, awaited by any of its handlers."""

    output: Output | None = None  # None: not completed yet
    # Who awaits it (GetPromise commands not yet answered).
    listeners: tuple[CallerRef, ...] = ()


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A command or notification exactly as it travels on the wire (type + protobuf body)."""

    type: int
    body: bytes


class TimerKind(StrEnum):
    SLEEP = "sleep"  # completes a SleepCommand
    RETRY = "retry"  # next attempt after backing off
    SCHEDULED = "scheduled"  # delayed invocation becomes due


@dataclass(frozen=True, slots=True, order=True)
class TimerKey:
    wake_at: int
    invocation_id: bytes  # raw id bytes keep timers orderable
    kind: TimerKind
    completion_id: int = 0
    # The invocation's created_at: idempotent ids repeat after a purge, and a timer of an
    # earlier life must not reach a later one.
    life: int = 0
