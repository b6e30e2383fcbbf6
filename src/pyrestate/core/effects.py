"""Outputs of the partition state machine, released only after their batch is committed."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyrestate.core.ids import InvocationId
from pyrestate.core.model import Failure, JournalEntry, Output, Target, TimerKey


@dataclass(frozen=True, slots=True)
class StartAttempt:
    invocation_id: InvocationId
    attempt: int
    target: Target
    journal_length: int
    deployment_id: str | None  # pinned deployment, None: pick the service's current one
    retry_count: int  # failed attempts since the last stored command
    since_progress_ms: int  # time since the last stored command (or since creation)
    # The journal when the core still holds it (a fresh invocation); else read from storage.
    journal: tuple[JournalEntry, ...] | None = None
    # For telemetry (not what the attempt is): when the invocation was created, its trace.
    created_at: int = field(default=0, compare=False)  # epoch ms
    trace: str | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class Notify:
    """Forward a stored notification to a running attempt (bidi streams only)."""

    invocation_id: InvocationId
    attempt: int
    index: int
    entry: JournalEntry


@dataclass(frozen=True, slots=True)
class Ack:
    invocation_id: InvocationId
    attempt: int
    command_index: int


@dataclass(frozen=True, slots=True)
class AbortAttempt:
    """Stop a running attempt and report it failed with ``failure`` (retried per policy)."""

    invocation_id: InvocationId
    attempt: int
    target: Target
    deployment_id: str
    failure: Failure


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer an ingress request that submitted a command.

    ``output`` set: the invocation is complete. Otherwise, if ``pending``, the ingress may
    wait for a ``Completed`` of ``invocation_id``. ``invocation_id`` None: nothing found.
    ``error`` set: the command could not be applied (nothing of it was committed).
    ``previously``: the request met an invocation that existed before it (a duplicate).
    ``expires_at``: the output is a stored completion, kept until then (epoch ms).
    """

    token: int
    invocation_id: InvocationId | None
    output: Output | None = None
    pending: bool = False
    target: Target | None = None
    error: str | None = None
    previously: bool = False
    expires_at: int | None = None
    outcome: str | None = None  # of a Control command
    # Of an incompatible deployment: the protocol version pinned and the deployment chosen.
    pinned: tuple[int, str] | None = None


@dataclass(frozen=True, slots=True)
class Completed:
    invocation_id: InvocationId
    output: Output
    # For telemetry (not what completed): what it ran, its trace, when it was created.
    target: Target | None = field(default=None, compare=False)
    trace: str | None = field(default=None, compare=False)
    created_at: int = field(default=0, compare=False)  # epoch ms


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    key: TimerKey


@dataclass(frozen=True, slots=True)
class AttemptFailureHandled:
    """A failed attempt's consequence, for logs and metrics: a retry at ``retry_at``
    (epoch ms), or the invocation paused (``retry_at`` None). A terminal failure completes
    the invocation instead (``Completed``)."""

    invocation_id: InvocationId
    target: Target
    deployment_id: str
    failure: Failure
    retry_at: int | None


Effect = (
    StartAttempt
    | Notify
    | Ack
    | AbortAttempt
    | Reply
    | Completed
    | ScheduleTimer
    | AttemptFailureHandled
)
