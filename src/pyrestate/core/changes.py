"""The durable changes one batch of commands produced, handed to storage as one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyrestate.core.commands import Invoke
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import (
    InvocationStatus,
    JournalEntry,
    Promise,
    PromiseKey,
    StateMutation,
    TimerKey,
)

SEEN_COMPLETION = 0
SEEN_SIGNAL = 1

# One appended journal entry: (invocation, index, entry, appended at (epoch ms, the
# machine's clock), callee). The callee is the invocation a call or send started, kept for
# introspection (sys_journal shows its id and target); None for every other entry.
JournalAppend = tuple[InvocationId, int, JournalEntry, int, Invoke | None]


@dataclass(slots=True)
class StateOp:
    service: str
    key: str
    name: bytes | None  # None with value None: clear all of the object's state
    value: bytes | None  # None: clear


@dataclass(slots=True)
class Changes:
    # Latest record per invocation; written once per batch however often it changed.
    statuses: dict[InvocationId, InvocationStatus] = field(default_factory=dict)
    purged: list[InvocationId] = field(default_factory=list)
    # Completed invocations whose retention ran out, found by storage's sweep: deleted
    # only if still completed.
    expired: list[InvocationId] = field(default_factory=list)
    journal: list[JournalAppend] = field(default_factory=list)
    state: list[StateOp] = field(default_factory=list)
    timers_added: list[TimerKey] = field(default_factory=list)
    timers_removed: list[TimerKey] = field(default_factory=list)
    # Notifications newly seen, one row each (never the whole set again): (id, kind, value),
    # kind SEEN_COMPLETION with a completion id or SEEN_SIGNAL with a signal index or name.
    seen: list[tuple[InvocationId, int, int | str]] = field(default_factory=list)
    # Latest value of each durable promise this batch changed.
    promises: dict[PromiseKey, Promise] = field(default_factory=dict)
    # Workflow keys whose run ended its retention: their state and promises go too.
    workflows_cleared: list[tuple[str, str]] = field(default_factory=list)
    # Completed invocations whose journal is dropped (their record stays).
    journals_purged: list[InvocationId] = field(default_factory=list)
    # State mutations waiting in a busy key's inbox, and those since applied or dropped.
    mutations_queued: list[StateMutation] = field(default_factory=list)
    mutations_done: list[int] = field(default_factory=list)
    # Latest sequence number accepted per producer (Kafka subscription topic partition).
    producers: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(
            self.statuses
            or self.purged
            or self.expired
            or self.journal
            or self.state
            or self.timers_added
            or self.timers_removed
            or self.seen
            or self.promises
            or self.workflows_cleared
            or self.journals_purged
            or self.mutations_queued
            or self.mutations_done
            or self.producers
        )
