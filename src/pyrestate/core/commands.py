"""Inputs of the partition state machine. Every durable change starts as one of these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from google.protobuf.message import Message

from pyrestate.core.ids import InvocationId
from pyrestate.core.model import CallerRef, Failure, JournalEntry, Output, Target, TimerKey


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    initial_interval_ms: int = 500
    factor: float = 2.0
    max_interval_ms: int = 60_000
    max_attempts: int | None = 70  # None: retry forever
    pause_on_max_attempts: bool = True  # official default; else the invocation fails

    def delay_ms(self, failures: int) -> int:
        """Delay before the attempt following the ``failures``-th failure (1-based)."""
        try:
            delay = self.initial_interval_ms * self.factor ** (failures - 1)
        except OverflowError:  # a factor above 1 after ~1000 failures
            return self.max_interval_ms
        if not delay < self.max_interval_ms:  # also NaN
            return self.max_interval_ms
        return max(0, int(delay))


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a completed invocation's record and journal are kept (ms)."""

    completion_ms: int = 86_400_000
    journal_ms: int = 86_400_000


@dataclass(frozen=True, slots=True)
class Invoke:
    """A new invocation, from the ingress or from another invocation (call or send)."""

    invocation_id: InvocationId
    target: Target
    input: bytes
    headers: tuple[tuple[str, str], ...] = ()
    idempotency_key: str | None = None
    execution_time: int | None = None  # epoch ms; None or past: run now
    caller: CallerRef | None = None  # completion to deliver the result to
    reply: int | None = None  # ingress token that waits for the outcome
    retention: Retention = Retention()
    # From a Kafka subscription: its id, and (producer, sequence number) to drop a record
    # delivered again (the producer names the topic partition, the sequence is the offset).
    subscription_id: str | None = None
    dedup: tuple[str, int] | None = None
    # Where it stands in a distributed trace (opaque here: telemetry/trace_context.py).
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class Attach:
    """Ingress waits for an existing invocation's result (or just its output if not ``wait``)."""

    invocation_id: InvocationId
    reply: int
    wait: bool = True


# --- From the invoker: what one attempt of an invocation reported.


@dataclass(frozen=True, slots=True)
class AttemptReport:
    invocation_id: InvocationId
    attempt: int
    deployment_id: str


@dataclass(frozen=True, slots=True)
class AppendCommand(AttemptReport):
    entry: JournalEntry
    message: Message  # ``entry.body`` parsed, so the core does not parse twice
    requires_ack: bool = False
    # For calls and sends: the callee, resolved and given an id by the invoker.
    callee: Invoke | None = None
    # For attach and get-output commands: the invocation they ask about.
    subject: InvocationId | None = None


@dataclass(frozen=True, slots=True)
class ProposeRunCompletion(AttemptReport):
    completion_id: int
    entry: JournalEntry  # the RunCompletion notification to store


@dataclass(frozen=True, slots=True)
class Suspend(AttemptReport):
    completions: frozenset[int]
    signals: frozenset[int | str]


@dataclass(frozen=True, slots=True)
class AttemptFailed(AttemptReport):
    failure: Failure
    retry_policy: RetryPolicy
    related: str | None = None
    next_retry_delay_ms: int | None = None
    # The SDK asked to fail without retrying (ErrorBehavior.FAIL) or the error is terminal.
    terminal: bool = False
    pause: bool = False  # the SDK asked to pause (ErrorBehavior.PAUSE)


@dataclass(frozen=True, slots=True)
class AttemptEnded(AttemptReport):
    """The SDK sent EndMessage: the journal is closed."""


# --- From elsewhere.


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: TimerKey


@dataclass(frozen=True, slots=True)
class DeliverNotification:
    """A completion or signal for an invocation: a call's result, an awakeable resolution."""

    invocation_id: InvocationId
    entry: JournalEntry
    completion_id: int | None = None
    signal: int | str | None = None
    reply: int | None = None  # ingress token answered once the delivery is committed


@dataclass(frozen=True, slots=True)
class Expire:
    """Completed invocations past their retention, found by the storage sweep."""

    invocation_ids: tuple[InvocationId, ...]


class ControlAction(StrEnum):
    """What an operator (or a handler) can do to an invocation."""

    CANCEL = "cancel"  # the handler is told and may compensate
    KILL = "kill"  # ends at once, with its children
    PURGE = "purge"  # forget a completed invocation
    PURGE_JOURNAL = "purge-journal"  # keep its record, drop its journal
    PAUSE = "pause"
    RESUME = "resume"


class ControlOutcome(StrEnum):
    DONE = "done"  # applied
    APPENDED = "appended"  # a cancellation is on its way to the running handler
    ALREADY = "already"  # nothing to change (pausing a paused invocation)
    NOT_FOUND = "not found"
    COMPLETED = "completed"  # too late: it has completed
    NOT_COMPLETED = "not completed"  # purge of an invocation still going
    NOT_RUNNING = "not running"  # pause of one that does not run
    NOT_STARTED = "not started"  # resume of an inboxed or scheduled one
    STILL_RUNNING = "still running"  # restart of one not completed
    MISSING_INPUT = "missing input"  # restart of one whose journal is gone
    UNSUPPORTED = "unsupported"  # restart of a workflow (or from a prefix, on protocol < 6)
    COPY_RANGE_INVALID = "copy range invalid"  # a copied command has no completion
    CANNOT_REPIN = "cannot repin"  # a new deployment for one running or never pinned
    DEPLOYMENT_NOT_FOUND = "deployment not found"
    INCOMPATIBLE_DEPLOYMENT = "incompatible deployment"  # it cannot speak the pinned protocol


KEEP_DEPLOYMENT = "keep"
LATEST_DEPLOYMENT = "latest"


@dataclass(frozen=True, slots=True)
class DeploymentChoice:
    """The deployment an operator wants an invocation on (resume, restart-as-new): keep
    the pinned one, the service's latest, or a deployment id; with what the registry knew
    when asked, so that the machine decides without reading it."""

    wanted: str  # KEEP_DEPLOYMENT, LATEST_DEPLOYMENT or a deployment id
    latest: Mapping[str, str] = field(default_factory=dict)  # service -> deployment id
    # deployment id -> (protocol version it speaks, lowest and highest it supports)
    protocols: Mapping[str, tuple[int, int, int]] = field(default_factory=dict)

    def resolve(self, service: str) -> str | None:
        """The deployment id wanted for ``service`` (not KEEP), None when there is none."""
        dep = self.latest.get(service) if self.wanted == LATEST_DEPLOYMENT else self.wanted
        return dep if dep in self.protocols else None

    def speaks(self, deployment: str | None) -> int | None:
        found = self.protocols.get(deployment) if deployment is not None else None
        return found[0] if found is not None else None


@dataclass(frozen=True, slots=True)
class Control:
    invocation_id: InvocationId
    action: ControlAction
    reply: int | None = None
    deployment: DeploymentChoice | None = None  # for RESUME: the deployment to resume on


@dataclass(frozen=True, slots=True)
class RestartAsNew:
    """Run a completed invocation again under a new id, with its journal up to ``upto``
    (0: the input alone) and the completions of the commands copied.

    ``uuid``: 16 random bytes for the new id (the machine draws nothing itself); it keeps
    the old id's partition key, as the official server does.
    """

    invocation_id: InvocationId
    uuid: bytes
    reply: int | None = None
    upto: int = 0
    deployment: DeploymentChoice = DeploymentChoice(KEEP_DEPLOYMENT)


@dataclass(frozen=True, slots=True)
class MutateState:
    """Replace an object's whole state (``POST /services/{name}/state``)."""

    service: str
    key: str
    state: tuple[tuple[bytes, bytes], ...]
    version: str | None = None
    reply: int | None = None


@dataclass(frozen=True, slots=True)
class CallResult:
    """A callee finished: deliver its output to the caller's journal."""

    caller: CallerRef
    output: Output


Command = (
    Invoke
    | Attach
    | AppendCommand
    | ProposeRunCompletion
    | Suspend
    | AttemptFailed
    | AttemptEnded
    | TimerFired
    | DeliverNotification
    | CallResult
    | Expire
    | Control
    | MutateState
    | RestartAsNew
)
