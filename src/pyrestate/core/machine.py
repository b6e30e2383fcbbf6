"""The invocation state machine of one partition: commands in, changes and effects out.

Pure and deterministic: no I/O, no clock, no randomness. Time and ids arrive inside the
commands (``now`` in epoch ms). Reads of committed data that is not held in memory go
through the ``Loader`` the shell passes in. The shell commits ``take_changes()`` in one
transaction and only then releases ``take_effects()``.

Memory holds every invocation that is running or waits for something other than its
start time (a small record each), the lock and inbox of every busy object key, and what a
batch touched until it is committed. Scheduled (delayed) invocations, completed ones and
object state live in storage; the shell preloads what a batch needs (``needs``/``preload``)
so that applying it reads nothing from disk.

A command that raises leaves the machine half-changed: the shell then discards the batch,
``reload``s from committed storage, applies the batch again without that command, and
turns it into an outcome with ``reject``.
"""

from __future__ import annotations

import base64
import hashlib
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from pyrestate.core import notifications as notif
from pyrestate.core.changes import SEEN_COMPLETION, SEEN_SIGNAL, Changes, StateOp
from pyrestate.core.commands import (
    KEEP_DEPLOYMENT,
    LATEST_DEPLOYMENT,
    AppendCommand,
    Attach,
    AttemptEnded,
    AttemptFailed,
    AttemptReport,
    CallResult,
    Command,
    Control,
    ControlAction,
    ControlOutcome,
    DeliverNotification,
    DeploymentChoice,
    Expire,
    Invoke,
    MutateState,
    ProposeRunCompletion,
    RestartAsNew,
    Retention,
    Suspend,
    TimerFired,
)
from pyrestate.core.effects import (
    AbortAttempt,
    Ack,
    AttemptFailureHandled,
    Completed,
    Effect,
    Notify,
    Reply,
    ScheduleTimer,
    StartAttempt,
)
from pyrestate.core.ids import AwakeableId, IdError, InvocationId
from pyrestate.core.journal_prefix import Prefix, copy_prefix
from pyrestate.core.limits import MAX_DURATION_MS
from pyrestate.core.model import (
    CallerRef,
    Failure,
    HandlerType,
    InvocationStatus,
    JournalEntry,
    Output,
    Promise,
    PromiseKey,
    ServiceType,
    StateMutation,
    Status,
    Target,
    TimerKey,
    TimerKind,
)
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType


class Loader(Protocol):
    """Reads of committed storage the machine needs for data it does not keep in memory."""

    def invocation(self, invocation_id: InvocationId) -> InvocationStatus | None: ...

    def state(self, service: str, key: str) -> dict[bytes, bytes]: ...

    def promise(self, service: str, key: str, name: str) -> Promise | None: ...

    def journal(self, invocation_id: InvocationId, length: int) -> list[JournalEntry]: ...


@dataclass(slots=True)
class Needs:
    """What a batch will read that memory lacks: the shell reads it before applying."""

    invocations: set[InvocationId] = field(default_factory=set)
    states: set[tuple[str, str]] = field(default_factory=set)
    promises: set[PromiseKey] = field(default_factory=set)
    journals: set[InvocationId] = field(default_factory=set)  # of invocations to kill

    def __bool__(self) -> bool:
        return bool(self.invocations or self.states or self.promises or self.journals)


@dataclass(slots=True)
class ObjectQueue:
    """One object key: who holds its lock, who waits for it (in arrival order)."""

    holder: InvocationId | None = None
    # Invocations and operators' state mutations, in arrival order.
    inbox: deque[InvocationId | StateMutation] = field(default_factory=deque)


_MISSING_OUTPUT = Output(failure=Failure(500, "invocation ended without an output"))
# The official server's answers (restate_types::errors).
_ALREADY_INVOKED = Output(failure=Failure(409, "the workflow method was already invoked"))
_PROMISE_DONE = Output(failure=Failure(409, "promise was already completed"))
_NOT_FOUND = Output(failure=Failure(404, "not found"))
_CANCELLED = Output(failure=Failure(409, "cancelled"))
_KILLED_FAILURE = Failure(409, "killed")
_KILLED = Output(failure=_KILLED_FAILURE)
CANCEL_SIGNAL = 1  # the built-in signal that tells a handler it is cancelled


def _is_run(target: Target) -> bool:
    """A workflow's run handler: at most one invocation per workflow key."""
    return target.handler_type is HandlerType.WORKFLOW


class PartitionMachine:
    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self.invocations: dict[InvocationId, InvocationStatus] = {}
        self.objects: dict[tuple[str, str], ObjectQueue] = {}
        # Lazily loaded object state, kept identical to storage plus this batch's writes.
        self._state: dict[tuple[str, str], dict[bytes, bytes]] = {}
        # This batch's state writes per object key, for a cache miss to replay.
        self._state_ops: dict[tuple[str, str], list[StateOp]] = {}
        # Durable promises this batch read or changed (storage holds them between batches).
        self._promises: dict[PromiseKey, Promise] = {}
        # Journals preloaded for this batch (of invocations an operator kills).
        self._journals: dict[InvocationId, list[JournalEntry]] = {}
        # Invocations the shell loaded for this batch (None: known not to exist).
        self._loaded: dict[InvocationId, InvocationStatus | None] = {}
        # In memory only while a batch handles them (scheduled ones wait in storage).
        self._evictable: list[InvocationId] = []
        self._next_inbox_seq = 0
        # Latest sequence number accepted per producer (one per subscribed Kafka topic
        # partition: few, all in memory), to drop records delivered again.
        self.producers: dict[str, int] = {}
        # Invocations not yet completed per subscription that started them: how far its
        # consumer may run ahead of the handlers.
        self.subscribed_live: dict[str, int] = {}
        # What the current batch completed and which object keys it touched, so that
        # committed() can let go of them without scanning everything in memory.
        self._completed: list[InvocationId] = []
        self._touched: set[tuple[str, str]] = set()
        self._changes = Changes()
        self._effects: list[Effect] = []
        self._now = 0

    # --- Recovery

    def recover(
        self,
        active: Iterable[InvocationStatus],
        now: int,
        mutations: Iterable[StateMutation] = (),
        producers: Mapping[str, int] | None = None,
    ) -> None:
        """Rebuild memory from committed storage's active invocations, restart running ones."""
        self.reload(active, now, mutations, producers)
        for st in list(self.invocations.values()):
            if st.status is Status.INVOKED:
                self._start_attempt(st)

    def reload(
        self,
        active: Iterable[InvocationStatus],
        now: int,
        mutations: Iterable[StateMutation] = (),
        producers: Mapping[str, int] | None = None,
    ) -> None:
        """Forget everything not committed; memory as committed storage has it.

        Running attempts are left alone: the invoker runs exactly the committed ones.
        """
        self.invocations.clear()
        self.objects.clear()
        self._state.clear()
        self._state_ops.clear()
        self._promises.clear()
        self._journals.clear()
        self._loaded.clear()
        self._evictable.clear()
        self._completed.clear()
        self._touched.clear()
        self._changes = Changes()
        self._effects = []
        self._next_inbox_seq = 0
        self.producers = dict(producers or {})
        self.subscribed_live.clear()
        self._now = now
        inboxed: list[InvocationStatus] = []
        for st in active:
            self.invocations[st.id] = st
            self._count_subscribed(st, 1)
            if st.status is Status.INBOXED:
                inboxed.append(st)
            elif st.target.holds_lock and st.status is not Status.SCHEDULED:
                self._object(st.target).holder = st.id
            if st.inbox_seq is not None:
                self._next_inbox_seq = max(self._next_inbox_seq, st.inbox_seq + 1)
        waiting: list[tuple[int, tuple[str, str], InvocationId | StateMutation]] = [
            (st.inbox_seq or 0, (st.target.service, st.target.key or ""), st.id) for st in inboxed
        ]
        waiting.extend((m.seq, (m.service, m.key), m) for m in mutations)
        for seq, ref, entry in sorted(waiting, key=lambda w: w[0]):
            self._next_inbox_seq = max(self._next_inbox_seq, seq + 1)
            self._queue(ref).inbox.append(entry)
        self._touched.clear()

    # --- Driving

    def apply(self, command: Command, now: int) -> None:
        self._now = now
        match command:
            case Invoke():
                self._on_invoke(command)
            case AppendCommand():
                self._on_append_command(command)
            case ProposeRunCompletion():
                self._on_propose_run(command)
            case Suspend():
                self._on_suspend(command)
            case AttemptFailed():
                self._on_attempt_failed(command)
            case AttemptEnded():
                self._on_attempt_ended(command)
            case TimerFired():
                self._on_timer(command.key)
            case DeliverNotification():
                self._on_deliver(command)
            case CallResult():
                self._deliver_call_result(command.caller, command.output)
            case Attach():
                self._on_attach(command)
            case Expire():
                self._on_expire(command)
            case Control():
                self._on_control(command)
            case MutateState():
                self._on_mutate_state(command)
            case RestartAsNew():
                self._on_restart(command)
            case _:
                raise TypeError(f"unknown command {command!r}")

    def needs(self, commands: Iterable[Command]) -> Needs:
        """Invocations, object states and promises these commands read that memory lacks."""
        needs = Needs()
        ids = needs.invocations
        for cmd in commands:
            match cmd:
                case Invoke():
                    if cmd.idempotency_key is not None or _is_run(cmd.target):
                        ids.add(cmd.invocation_id)
                case Attach():
                    ids.add(cmd.invocation_id)
                case MutateState():
                    if (cmd.service, cmd.key) not in self._state:
                        needs.states.add((cmd.service, cmd.key))
                case Control():
                    ids.add(cmd.invocation_id)
                    if cmd.action is ControlAction.KILL:
                        needs.journals.add(cmd.invocation_id)
                case RestartAsNew():
                    ids.add(cmd.invocation_id)
                    needs.journals.add(cmd.invocation_id)
                case TimerFired():
                    ids.add(InvocationId.from_bytes(cmd.key.invocation_id))
                case AppendCommand():
                    callee = cmd.callee
                    if callee is not None and (
                        callee.idempotency_key is not None or _is_run(callee.target)
                    ):
                        ids.add(callee.invocation_id)
                    if cmd.subject is not None:
                        ids.add(cmd.subject)
                    if cmd.entry.type not in _KEYED_READS:
                        continue  # most commands (the hot path) read nothing
                    st = self.invocations.get(cmd.invocation_id)
                    ref = st.target.object_ref if st is not None else None
                    if ref is None:
                        continue
                    if cmd.entry.type in _STATE_READS:
                        if ref not in self._state:
                            needs.states.add(ref)
                    else:
                        key = (*ref, cmd.message.key)  # type: ignore[attr-defined]
                        if key not in self._promises:
                            needs.promises.add(key)
        ids.difference_update(self.invocations)
        return needs

    def preload(
        self,
        invocations: Mapping[InvocationId, InvocationStatus | None],
        states: Mapping[tuple[str, str], dict[bytes, bytes]],
        promises: Mapping[PromiseKey, Promise | None],
        journals: Mapping[InvocationId, list[JournalEntry]],
    ) -> None:
        """What ``needs`` asked for, read from committed storage just before the batch."""
        self._loaded.update(invocations)
        for ref, values in states.items():
            if ref not in self._state:
                self._state[ref] = values
                self._touched.add(ref)
        for key, promise in promises.items():
            self._promises.setdefault(key, promise or Promise())
        self._journals.update(journals)

    def reject(self, command: Command, error: str) -> None:
        """``command`` could not be applied (nothing of it remains): answer it as failed."""
        failure = Failure(500, f"internal error, the command was not applied: {error}")
        match command:
            case Invoke() | Attach() | DeliverNotification() if command.reply is not None:
                self._effects.append(Reply(command.reply, None, error=failure.message))
            case AttemptFailed():
                st = self._current(command)
                if st is not None:  # nothing left to try: wait for an operator
                    st.status = Status.PAUSED
                    st.last_failure = failure
                    self._dirty(st)
            case AttemptReport():
                st = self._current(command)
                if st is not None:
                    self._abort(st, failure)

    def take_changes(self) -> Changes:
        changes, self._changes = self._changes, Changes()
        self._state_ops.clear()
        return changes

    def take_effects(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects

    def committed(self) -> None:
        """The last taken changes are durable: drop what memory no longer needs to hold."""
        # Only what this batch touched: a scan of everything would grow with the backlog.
        for inv_id in self._completed:
            st = self.invocations.get(inv_id)
            if st is not None and st.status is Status.COMPLETED:
                del self.invocations[inv_id]
        self._completed.clear()
        self._promises.clear()
        self._journals.clear()
        for inv_id in self._evictable:
            st = self.invocations.get(inv_id)
            if st is not None and st.status is Status.SCHEDULED:
                del self.invocations[inv_id]
        self._evictable.clear()
        self._loaded.clear()
        for ref in self._touched:
            q = self.objects.get(ref)
            if q is None or (q.holder is None and not q.inbox):
                self.objects.pop(ref, None)
                self._state.pop(ref, None)
        self._touched.clear()

    # --- Lookups

    def _get(self, inv_id: InvocationId) -> InvocationStatus | None:
        """From memory, else as preloaded (or, unplanned, read) from committed storage."""
        st = self.invocations.get(inv_id)
        if st is not None:
            return st
        st = self._loaded[inv_id] if inv_id in self._loaded else self._loader.invocation(inv_id)
        if st is not None and not st.is_completed:
            # It may change now: memory holds it while this batch does.
            self.invocations[inv_id] = st
            self._evictable.append(inv_id)
        return st

    def _current(self, report: AttemptReport) -> InvocationStatus | None:
        """The invocation a report is about, if the report comes from its running attempt."""
        st = self.invocations.get(report.invocation_id)
        if st is None or st.status is not Status.INVOKED or st.attempt != report.attempt:
            return None  # a stale attempt: its words no longer count
        return st

    def _object(self, target: Target) -> ObjectQueue:
        ref = target.object_ref
        assert ref is not None
        return self._queue(ref)

    def _queue(self, ref: tuple[str, str]) -> ObjectQueue:
        self._touched.add(ref)
        q = self.objects.get(ref)
        if q is None:
            q = self.objects[ref] = ObjectQueue()
        return q

    def _dirty(self, st: InvocationStatus) -> None:
        st.modified_at = self._now
        self._changes.statuses[st.id] = st

    # --- New invocations

    def _on_invoke(self, cmd: Invoke) -> None:
        if cmd.dedup is not None:
            producer, seq = cmd.dedup
            if seq <= self.producers.get(producer, -1):
                # Delivered again (a consumer restarted behind what was accepted): drop.
                if cmd.reply is not None:
                    self._effects.append(Reply(cmd.reply, None, previously=True))
                return
            self.producers[producer] = seq
            self._changes.producers[producer] = seq
        run = _is_run(cmd.target)
        if cmd.idempotency_key is not None or run:
            # Their ids are derived from workflow or idempotency key: a duplicate finds it.
            existing = self._get(cmd.invocation_id)
            if existing is None:
                pass
            elif run:
                # A workflow runs once per key: later requests fail, they never attach.
                if cmd.reply is not None:
                    self._effects.append(
                        Reply(cmd.reply, existing.id, _ALREADY_INVOKED, previously=True)
                    )
                if cmd.caller is not None:
                    self._deliver_call_result(cmd.caller, _ALREADY_INVOKED)
                return
            else:
                self._join_existing(existing, cmd)
                return
        self._create(cmd)

    def _join_existing(self, st: InvocationStatus, cmd: Invoke) -> None:
        """A request with a known idempotency key gets the first request's invocation."""
        if st.is_completed:
            assert st.output is not None
            if cmd.reply is not None:
                self._effects.append(self._stored_reply(cmd.reply, st, previously=True))
            if cmd.caller is not None:
                self._deliver_call_result(cmd.caller, st.output)
            return
        if cmd.reply is not None:
            self._effects.append(Reply(cmd.reply, st.id, pending=True, previously=True))
        if cmd.caller is not None:
            self._add_caller(st, cmd.caller)

    def _add_caller(self, st: InvocationStatus, caller: CallerRef) -> None:
        st.callers = (*st.callers, caller)
        self._dirty(st)

    @staticmethod
    def _stored_reply(token: int, st: InvocationStatus, previously: bool = False) -> Reply:
        """The answer a completed invocation gives from storage, with its expiry."""
        assert st.completed_at is not None
        return Reply(
            token,
            st.id,
            st.output,
            target=st.target,
            previously=previously,
            expires_at=st.completed_at + st.completion_retention,
        )

    def _create(
        self, cmd: Invoke, prefix: Prefix | None = None, deployment: str | None = None
    ) -> None:
        """A new invocation; ``prefix``: the journal it starts with (restart-as-new), else
        its input alone."""
        st = InvocationStatus(
            id=cmd.invocation_id,
            target=cmd.target,
            status=Status.SCHEDULED,
            created_at=self._now,
            modified_at=self._now,
            headers=cmd.headers,
            idempotency_key=cmd.idempotency_key,
            subscription_id=cmd.subscription_id,
            trace=cmd.trace,
            callers=(cmd.caller,) if cmd.caller is not None else (),
            execution_time=cmd.execution_time,
            completion_retention=cmd.retention.completion_ms,
            journal_retention=cmd.retention.journal_ms,
            deployment_id=deployment,
        )
        self.invocations[st.id] = st
        self._count_subscribed(st, 1)
        fresh: JournalEntry | None
        if prefix is None:
            fresh = notif.input_entry(cmd.input, cmd.headers)
            self._append(st, fresh)
            st.command_count = 1
        else:
            for entry in prefix.entries:
                self._append(st, entry)
            fresh = prefix.entries[0] if len(prefix.entries) == 1 else None
            st.command_count = prefix.commands
            st.completions_seen = set(prefix.completions)
            st.signals_seen = set(prefix.signals)
            self._changes.seen.extend((st.id, SEEN_COMPLETION, c) for c in prefix.completions)
            self._changes.seen.extend((st.id, SEEN_SIGNAL, s) for s in prefix.signals)
        if cmd.reply is not None:
            self._effects.append(Reply(cmd.reply, st.id, pending=True))
        if cmd.execution_time is not None and cmd.execution_time > self._now:
            self._add_timer(st, cmd.execution_time, TimerKind.SCHEDULED)
            self._evictable.append(st.id)
        else:
            self._enqueue(st, fresh)

    def _enqueue(self, st: InvocationStatus, fresh: JournalEntry | None = None) -> None:
        """Run now, or wait in the object key's inbox while another exclusive holds it."""
        if st.target.holds_lock:
            q = self._object(st.target)
            if q.holder is not None:
                st.status = Status.INBOXED
                st.inbox_seq = self._next_inbox_seq
                self._next_inbox_seq += 1
                q.inbox.append(st.id)
                self._dirty(st)
                return
            q.holder = st.id
        self._start_attempt(st, fresh)

    def _start_attempt(self, st: InvocationStatus, fresh: JournalEntry | None = None) -> None:
        """``fresh``: the input entry of a new invocation, handed over without a storage read."""
        st.status = Status.INVOKED
        st.attempt += 1
        st.inbox_seq = None
        st.next_retry_at = None
        st.waiting_completions = frozenset()
        st.waiting_signals = frozenset()
        if st.running_at is None:
            st.running_at = self._now
        self._dirty(st)
        self._effects.append(
            StartAttempt(
                st.id,
                st.attempt,
                st.target,
                st.journal_length,
                st.deployment_id,
                st.retry_count,
                self._now - (st.last_progress_at or st.created_at),
                (fresh,) if fresh is not None else None,
                st.created_at,
                st.trace,
            )
        )

    # --- Journal

    def _append(
        self, st: InvocationStatus, entry: JournalEntry, callee: Invoke | None = None
    ) -> int:
        """Append ``entry`` (``callee``: the invocation a call or send starts)."""
        index = st.journal_length
        st.journal_length += 1
        self._changes.journal.append((st.id, index, entry, self._now, callee))
        self._dirty(st)
        return index

    def _append_notification(
        self,
        st: InvocationStatus,
        entry: JournalEntry,
        completion_id: int | None = None,
        signal: int | str | None = None,
    ) -> None:
        """Store a notification once, forward it to a running attempt or resume on it."""
        if st.is_completed:
            return
        if completion_id is not None:
            if completion_id in st.completions_seen:
                return
            st.completions_seen.add(completion_id)
            self._changes.seen.append((st.id, SEEN_COMPLETION, completion_id))
        if signal is not None:
            if signal in st.signals_seen:
                return  # e.g. an awakeable resolved twice: the first resolution wins
            st.signals_seen.add(signal)
            self._changes.seen.append((st.id, SEEN_SIGNAL, signal))
        index = self._append(st, entry)
        if st.status is Status.INVOKED:
            self._effects.append(Notify(st.id, st.attempt, index, entry))
        elif st.status is Status.SUSPENDED and (
            completion_id in st.waiting_completions or signal in st.waiting_signals
        ):
            st.attempt_failures = 0  # resumed: a new run of attempts, as the official counts
            self._start_attempt(st)

    def _on_append_command(self, cmd: AppendCommand) -> None:
        st = self._current(cmd)
        if st is None:
            return
        if st.deployment_id is None:
            # Pinned by its first stored command, as officially: an attempt that failed
            # before storing any leaves the choice to the next one.
            st.deployment_id = cmd.deployment_id
        handler = _COMMAND_HANDLERS.get(cmd.entry.type)
        if cmd.entry.type in _STATE_READS:
            self._read_state(st.target)  # may read storage: before anything changes
        command_index = st.command_count
        st.command_count += 1
        st.retry_count = 0  # progress: the SDK counts its retries since the last command
        st.last_progress_at = self._now
        self._append(st, cmd.entry, cmd.callee)
        if cmd.requires_ack:
            self._effects.append(Ack(st.id, st.attempt, command_index))
        if handler is not None:
            handler(self, st, cmd)

    def _cmd_output(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        st.output = notif.output_of(cmd.message)  # type: ignore[arg-type]

    def _cmd_set_state(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.SetStateCommandMessage = cmd.message  # type: ignore[assignment]
        self._write_state(st.target, msg.key, msg.value.content)

    def _cmd_clear_state(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.ClearStateCommandMessage = cmd.message  # type: ignore[assignment]
        self._write_state(st.target, msg.key, None)

    def _cmd_clear_all_state(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        self._write_state(st.target, None, None)

    def _cmd_get_lazy_state(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.GetLazyStateCommandMessage = cmd.message  # type: ignore[assignment]
        value = self._read_state(st.target).get(msg.key)
        out = None if value is None else Output(value=value)
        entry = notif.completion(
            MessageType.GET_LAZY_STATE_COMPLETION, msg.result_completion_id, out
        )
        self._append_notification(st, entry, completion_id=msg.result_completion_id)

    def _cmd_get_lazy_state_keys(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.GetLazyStateKeysCommandMessage = cmd.message  # type: ignore[assignment]
        keys = sorted(self._read_state(st.target))
        entry = notif.state_keys_completion(msg.result_completion_id, keys)
        self._append_notification(st, entry, completion_id=msg.result_completion_id)

    def _cmd_sleep(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.SleepCommandMessage = cmd.message  # type: ignore[assignment]
        # The invoker bounded wake_up_time.
        self._add_timer(st, msg.wake_up_time, TimerKind.SLEEP, msg.result_completion_id)

    def _cmd_call(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        """Calls and one-way sends: the caller learns the callee's id, the callee starts."""
        msg: pb.CallCommandMessage | pb.OneWayCallCommandMessage = cmd.message  # type: ignore[assignment]
        assert cmd.callee is not None
        notification_id = msg.invocation_id_notification_idx
        entry = notif.invocation_id_completion(notification_id, str(cmd.callee.invocation_id))
        self._append_notification(st, entry, completion_id=notification_id)
        callee = cmd.callee
        if callee.caller is not None:
            callee = replace(callee, caller=replace(callee.caller, life=st.created_at))
        self._on_invoke(callee)

    def _cmd_complete_awakeable(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.CompleteAwakeableCommandMessage = cmd.message  # type: ignore[assignment]
        try:
            awk = AwakeableId.parse(msg.awakeable_id)
        except IdError:
            return  # the invoker validates ids; a bad one cannot reach here
        output = (
            Output(failure=notif.failure_of(msg.failure))
            if msg.HasField("failure")
            else Output(value=msg.value.content)
        )
        self.resolve_signal(awk.invocation_id, awk.index, output)

    def _cmd_send_signal(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.SendSignalCommandMessage = cmd.message  # type: ignore[assignment]
        try:
            target = InvocationId.parse(msg.target_invocation_id)
        except IdError:
            return
        sig: int | str = msg.name if msg.HasField("name") else msg.idx
        if msg.HasField("failure"):
            output: Output | None = Output(failure=notif.failure_of(msg.failure))
        elif msg.HasField("value"):
            output = Output(value=msg.value.content)
        else:
            output = None
        self.resolve_signal(target, sig, output)

    def resolve_signal(self, target: InvocationId, sig: int | str, output: Output | None) -> None:
        st = self.invocations.get(target)
        if st is not None:
            self._append_notification(st, notif.signal(sig, output), signal=sig)

    # --- State

    def _write_state(self, target: Target, name: bytes | None, value: bytes | None) -> None:
        ref = target.object_ref
        if ref is not None:  # the invoker refuses state commands of unkeyed services
            self._write_ref(ref, name, value)

    def _write_ref(self, ref: tuple[str, str], name: bytes | None, value: bytes | None) -> None:
        op = StateOp(ref[0], ref[1], name, value)
        self._changes.state.append(op)
        cached = self._state.get(ref)
        if cached is None:
            self._state_ops.setdefault(ref, []).append(op)
            return
        if name is None:
            cached.clear()
        elif value is None:
            cached.pop(name, None)
        else:
            cached[name] = value

    def _read_state(self, target: Target) -> dict[bytes, bytes]:
        ref = target.object_ref
        return {} if ref is None else self._read_ref(ref)

    def _read_ref(self, ref: tuple[str, str]) -> dict[bytes, bytes]:
        cached = self._state.get(ref)
        if cached is None:
            cached = dict(self._loader.state(*ref))
            # Replay this batch's writes to this key, which storage does not have yet.
            for op in self._state_ops.pop(ref, ()):
                if op.name is None:
                    cached.clear()
                elif op.value is None:
                    cached.pop(op.name, None)
                else:
                    cached[op.name] = op.value
            self._state[ref] = cached
            self._touched.add(ref)
        return cached

    # --- Durable promises (workflows)

    def _promise(self, st: InvocationStatus, name: str) -> tuple[PromiseKey, Promise]:
        ref = st.target.object_ref
        assert ref is not None  # the invoker lets only workflows use promises
        key = (*ref, name)
        p = self._promises.get(key)
        if p is None:
            p = self._promises[key] = self._loader.promise(*key) or Promise()
        return key, p

    def _cmd_get_promise(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.GetPromiseCommandMessage = cmd.message  # type: ignore[assignment]
        key, p = self._promise(st, msg.key)
        cid = msg.result_completion_id
        if p.output is not None:
            entry = notif.completion(MessageType.GET_PROMISE_COMPLETION, cid, p.output)
            self._append_notification(st, entry, completion_id=cid)
            return
        waiter = CallerRef(st.id, cid, st.created_at, MessageType.GET_PROMISE_COMPLETION)
        p.listeners = (*p.listeners, waiter)
        self._changes.promises[key] = p

    def _cmd_peek_promise(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.PeekPromiseCommandMessage = cmd.message  # type: ignore[assignment]
        _, p = self._promise(st, msg.key)
        cid = msg.result_completion_id
        entry = notif.completion(MessageType.PEEK_PROMISE_COMPLETION, cid, p.output)
        self._append_notification(st, entry, completion_id=cid)

    def _cmd_complete_promise(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.CompletePromiseCommandMessage = cmd.message  # type: ignore[assignment]
        key, p = self._promise(st, msg.key)
        result = None  # void: completed now
        if p.output is not None:
            result = _PROMISE_DONE  # the first completion stays
        else:
            p.output = (
                Output(failure=notif.failure_of(msg.completion_failure))
                if msg.HasField("completion_failure")
                else Output(value=msg.completion_value.content)
            )
            listeners, p.listeners = p.listeners, ()
            self._changes.promises[key] = p
            for waiter in listeners:
                self._deliver_call_result(waiter, p.output)
        cid = msg.result_completion_id
        entry = notif.completion(MessageType.COMPLETE_PROMISE_COMPLETION, cid, result)
        self._append_notification(st, entry, completion_id=cid)

    def _clear_workflow(self, target: Target) -> None:
        """A workflow's run is gone: so are the state and promises of its key."""
        ref = target.object_ref
        assert ref is not None
        self._changes.workflows_cleared.append(ref)
        self._state.pop(ref, None)
        self._state_ops.pop(ref, None)
        for key in [k for k in self._promises if k[:2] == ref]:
            del self._promises[key]

    # --- Other invocations' results, from a handler

    def _cmd_attach(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.AttachInvocationCommandMessage = cmd.message  # type: ignore[assignment]
        assert cmd.subject is not None  # resolved by the invoker
        waiter = CallerRef(
            st.id, msg.result_completion_id, st.created_at, MessageType.ATTACH_INVOCATION_COMPLETION
        )
        subject = self._get(cmd.subject)
        if subject is None:
            self._deliver_call_result(waiter, _NOT_FOUND)
        elif subject.is_completed:
            assert subject.output is not None
            self._deliver_call_result(waiter, subject.output)
        else:
            self._add_caller(subject, waiter)

    def _cmd_get_output(self, st: InvocationStatus, cmd: AppendCommand) -> None:
        msg: pb.GetInvocationOutputCommandMessage = cmd.message  # type: ignore[assignment]
        assert cmd.subject is not None
        subject = self._get(cmd.subject)
        # Not completed yet: void, as the official answers.
        output = _NOT_FOUND if subject is None else subject.output
        cid = msg.result_completion_id
        entry = notif.completion(MessageType.GET_INVOCATION_OUTPUT_COMPLETION, cid, output)
        self._append_notification(st, entry, completion_id=cid)

    # --- Run, suspension, failure, end

    def _on_propose_run(self, cmd: ProposeRunCompletion) -> None:
        st = self._current(cmd)
        if st is not None:
            self._append_notification(st, cmd.entry, completion_id=cmd.completion_id)

    def _on_suspend(self, cmd: Suspend) -> None:
        st = self._current(cmd)
        if st is None:
            return
        if cmd.completions & st.completions_seen or cmd.signals & st.signals_seen:
            # What it waits for arrived while it was deciding to suspend.
            self._start_attempt(st)
            return
        st.status = Status.SUSPENDED
        st.waiting_completions = cmd.completions
        st.waiting_signals = cmd.signals
        self._dirty(st)

    def _on_attempt_failed(self, cmd: AttemptFailed) -> None:
        st = self._current(cmd)
        if st is None:
            return
        st.retry_count += 1
        st.attempt_failures += 1
        st.last_failure = cmd.failure
        st.last_failure_related = cmd.related
        policy = cmd.retry_policy
        if cmd.terminal:
            self._complete(st, Output(failure=cmd.failure))
            return
        out_of_attempts = (
            policy.max_attempts is not None and st.attempt_failures >= policy.max_attempts
        )
        if cmd.pause or (out_of_attempts and policy.pause_on_max_attempts):
            st.status = Status.PAUSED
            self._dirty(st)
            self._effects.append(
                AttemptFailureHandled(st.id, st.target, cmd.deployment_id, cmd.failure, None)
            )
            return
        if out_of_attempts:
            self._complete(st, Output(failure=cmd.failure))
            return
        delay = cmd.next_retry_delay_ms
        if delay is None:
            delay = policy.delay_ms(st.attempt_failures)
        st.status = Status.BACKING_OFF
        st.next_retry_at = self._now + min(delay, MAX_DURATION_MS)
        self._dirty(st)
        self._add_timer(st, st.next_retry_at, TimerKind.RETRY, st.attempt)
        self._effects.append(
            AttemptFailureHandled(
                st.id, st.target, cmd.deployment_id, cmd.failure, st.next_retry_at
            )
        )

    def _on_attempt_ended(self, cmd: AttemptEnded) -> None:
        st = self._current(cmd)
        if st is not None:
            self._complete(st, st.output or _MISSING_OUTPUT)

    def _count_subscribed(self, st: InvocationStatus, delta: int) -> None:
        sub = st.subscription_id
        if sub is not None:
            live = self.subscribed_live.get(sub, 0) + delta
            if live > 0:
                self.subscribed_live[sub] = live
            else:
                self.subscribed_live.pop(sub, None)

    def _complete(self, st: InvocationStatus, output: Output) -> None:
        self._count_subscribed(st, -1)
        st.status = Status.COMPLETED
        self._completed.append(st.id)
        st.output = output
        st.completed_at = self._now
        st.waiting_completions = frozenset()
        st.waiting_signals = frozenset()
        self._dirty(st)
        if st.target.holds_lock:
            q = self._object(st.target)
            if q.holder == st.id:
                self._release(st.target)
            elif st.id in q.inbox:  # ended before its turn (cancelled or killed)
                q.inbox.remove(st.id)
        self._effects.append(Completed(st.id, output, st.target, st.trace, st.created_at))
        for caller in st.callers:
            self._deliver_call_result(caller, output)
        if max(st.completion_retention, st.journal_retention) <= 0:
            self._purge(st.id)  # nothing to keep; otherwise storage's sweep expires it
            if _is_run(st.target):
                self._clear_workflow(st.target)

    def _release(self, target: Target) -> None:
        q = self._object(target)
        q.holder = None
        while q.inbox:
            entry = q.inbox.popleft()
            if isinstance(entry, StateMutation):
                self._mutate(entry)
                self._changes.mutations_done.append(entry.seq)
                continue
            nxt = self.invocations.get(entry)
            if nxt is not None and nxt.status is Status.INBOXED:
                q.holder = nxt.id
                self._start_attempt(nxt)
                return

    def _deliver_call_result(self, caller: CallerRef, output: Output) -> None:
        st = self.invocations.get(caller.invocation_id)
        if st is None or (caller.life and st.created_at != caller.life):
            return
        entry = notif.completion(caller.kind, caller.completion_id, output)
        self._append_notification(st, entry, completion_id=caller.completion_id)

    def _on_deliver(self, cmd: DeliverNotification) -> None:
        st = self.invocations.get(cmd.invocation_id)
        if st is not None:
            self._append_notification(st, cmd.entry, cmd.completion_id, cmd.signal)
        if cmd.reply is not None:
            self._effects.append(Reply(cmd.reply, st.id if st is not None else None))

    # --- Timers

    def _add_timer(
        self, st: InvocationStatus, wake_at: int, kind: TimerKind, completion_id: int = 0
    ) -> None:
        key = TimerKey(wake_at, st.id.to_bytes(), kind, completion_id, st.created_at)
        self._changes.timers_added.append(key)
        self._effects.append(ScheduleTimer(key))

    def _on_timer(self, key: TimerKey) -> None:
        st = self._get(InvocationId.from_bytes(key.invocation_id))
        self._changes.timers_removed.append(key)
        if st is None or st.created_at != key.life:
            return  # its invocation is gone, or this id has started a new life since
        if key.kind is TimerKind.SLEEP:
            entry = notif.completion(MessageType.SLEEP_COMPLETION, key.completion_id, None)
            self._append_notification(st, entry, completion_id=key.completion_id)
        elif key.kind is TimerKind.RETRY:
            if st.status is Status.BACKING_OFF and st.attempt == key.completion_id:
                self._start_attempt(st)
        elif key.kind is TimerKind.SCHEDULED and st.status is Status.SCHEDULED:
            self._enqueue(st)

    def _purge(self, inv_id: InvocationId) -> None:
        self.invocations.pop(inv_id, None)
        self._changes.statuses.pop(inv_id, None)
        self._changes.purged.append(inv_id)

    def _on_expire(self, cmd: Expire) -> None:
        for inv_id in cmd.invocation_ids:
            st = self.invocations.get(inv_id)
            if st is None:  # completed and committed: storage deletes it if still so
                self._changes.expired.append(inv_id)

    # --- Operators: state mutations

    def _on_mutate_state(self, cmd: MutateState) -> None:
        ref = (cmd.service, cmd.key)
        mutation = StateMutation(self._next_inbox_seq, cmd.service, cmd.key, cmd.state, cmd.version)
        q = self.objects.get(ref)
        if q is not None and (q.holder is not None or q.inbox):
            # The key is busy: the mutation waits its turn, like an exclusive handler.
            self._next_inbox_seq += 1
            self._queue(ref).inbox.append(mutation)
            self._changes.mutations_queued.append(mutation)
        else:
            self._mutate(mutation)
        if cmd.reply is not None:
            self._effects.append(Reply(cmd.reply, None))

    def _mutate(self, m: StateMutation) -> None:
        ref = (m.service, m.key)
        if m.version is not None and m.version != state_version(self._read_ref(ref)):
            return  # computed from a state that has changed since: dropped
        self._write_ref(ref, None, None)
        for name, value in m.state:
            self._write_ref(ref, name, value)

    # --- Operators: restart as new

    def _on_restart(self, cmd: RestartAsNew) -> None:
        st = self._get(cmd.invocation_id)
        new_id = None
        pinned = None
        if st is None:
            outcome = ControlOutcome.NOT_FOUND
        else:
            outcome, new_id, pinned = self._restart(st, cmd)
        if cmd.reply is not None:
            self._effects.append(Reply(cmd.reply, new_id, outcome=outcome, pinned=pinned))

    def _restart(
        self, st: InvocationStatus, cmd: RestartAsNew
    ) -> tuple[ControlOutcome, InvocationId | None, tuple[int, str] | None]:
        """The checks of the official server, in its order, then the new invocation."""
        if st.status in (Status.SCHEDULED, Status.INBOXED):
            return ControlOutcome.NOT_STARTED, None, None
        if not st.is_completed:
            return ControlOutcome.STILL_RUNNING, None, None
        if st.journal_length == 0:
            return ControlOutcome.MISSING_INPUT, None, None
        if st.target.service_type is ServiceType.WORKFLOW:
            return ControlOutcome.UNSUPPORTED, None, None
        choice = cmd.deployment
        speaks = choice.speaks(st.deployment_id)
        # Replaying a copied prefix needs the deterministic randomness of protocol 6.
        if cmd.upto > 0 and (speaks is None or speaks < 6):
            return ControlOutcome.UNSUPPORTED, None, None
        deployment = st.deployment_id
        if choice.wanted != KEEP_DEPLOYMENT:
            refused, chosen, pinned = self._repin(st, choice)
            if refused is not None:
                return refused, None, pinned
            if deployment is not None:
                deployment = chosen
        journal = self._journals.get(st.id)
        if journal is None:
            # From the input alone, only it is read (a read on the writer's path).
            journal = self._loader.journal(st.id, st.journal_length if cmd.upto else 1)
        if not journal:
            return ControlOutcome.MISSING_INPUT, None, None
        prefix = copy_prefix(journal, cmd.upto)
        if prefix is None:
            return ControlOutcome.COPY_RANGE_INVALID, None, None
        first = pb.InputCommandMessage.FromString(journal[0].body)
        new_id = InvocationId(st.id.partition_key, cmd.uuid)
        invoke = Invoke(
            new_id,
            st.target,
            first.value.content,
            headers=tuple((h.key, h.value) for h in first.headers),
            retention=Retention(st.completion_retention, st.journal_retention),
        )
        self._create(invoke, prefix, deployment)
        return ControlOutcome.DONE, new_id, None

    @staticmethod
    def _repin(
        st: InvocationStatus, choice: DeploymentChoice
    ) -> tuple[ControlOutcome | None, str | None, tuple[int, str] | None]:
        """The deployment ``choice`` names for ``st``, or why it cannot run there."""
        chosen = choice.resolve(st.target.service)
        if chosen is None:
            return ControlOutcome.DEPLOYMENT_NOT_FOUND, None, None
        speaks = choice.speaks(st.deployment_id)
        _, lowest, highest = choice.protocols[chosen]
        if speaks is not None and not lowest <= speaks <= highest:
            return ControlOutcome.INCOMPATIBLE_DEPLOYMENT, None, (speaks, chosen)
        return None, chosen, None

    # --- Operators: cancel, kill, purge, pause, resume

    def _on_control(self, cmd: Control) -> None:
        st = self._get(cmd.invocation_id)
        pinned = None
        if st is None:
            outcome = ControlOutcome.NOT_FOUND
        elif cmd.action is ControlAction.RESUME:
            outcome, pinned = self._resume(st, cmd.deployment)
        else:
            outcome = _CONTROLS[cmd.action](self, st)
        if cmd.reply is not None:
            self._effects.append(
                Reply(cmd.reply, cmd.invocation_id, outcome=outcome, pinned=pinned)
            )

    def _cancel(self, st: InvocationStatus) -> ControlOutcome:
        if st.is_completed:
            return ControlOutcome.COMPLETED
        if st.status in (Status.SCHEDULED, Status.INBOXED):
            self._complete(st, _CANCELLED)  # never started: nothing to compensate
            return ControlOutcome.DONE
        # The handler hears it (the SDK raises in it) and may compensate, and cancels the
        # calls it waits for. A backing-off one hears it at its next attempt.
        self._append_notification(st, notif.signal(CANCEL_SIGNAL, None), signal=CANCEL_SIGNAL)
        if st.status in (Status.SUSPENDED, Status.PAUSED):
            st.attempt_failures = 0
            self._start_attempt(st)
        return ControlOutcome.APPENDED

    def _kill(self, st: InvocationStatus) -> ControlOutcome:
        if st.is_completed:
            return ControlOutcome.COMPLETED
        children = self._children(st)
        if st.status is Status.INVOKED:
            self._abort(st, _KILLED_FAILURE)
        # Ended before its children, so that their results find it completed and stay out
        # of its journal, as officially.
        self._complete(st, _KILLED)
        for child_id in children:
            child = self._get(child_id)
            if child is not None:
                self._kill(child)
        return ControlOutcome.DONE

    def _abort(self, st: InvocationStatus, failure: Failure) -> None:
        """Stop ``st``'s running attempt; its report of failing comes too late to count
        if ``st`` has moved on meanwhile (completed, paused)."""
        self._effects.append(
            AbortAttempt(st.id, st.attempt, st.target, st.deployment_id or "", failure)
        )

    def _children(self, st: InvocationStatus) -> list[InvocationId]:
        """The invocations ``st`` called and still waits for, from its journal."""
        journal = self._journals.get(st.id)
        if journal is None:  # a grandchild: not preloaded, and rare
            journal = self._loader.journal(st.id, st.journal_length)
        results: dict[int, int] = {}  # result completion id -> id notification index
        callee_ids: dict[int, str] = {}
        done: set[int] = set()
        for entry in journal:
            if entry.type == MessageType.CALL_COMMAND:
                call = pb.CallCommandMessage.FromString(entry.body)
                results[call.result_completion_id] = call.invocation_id_notification_idx
            elif entry.type == MessageType.CALL_INVOCATION_ID_COMPLETION:
                note = pb.NotificationTemplate.FromString(entry.body)
                callee_ids[note.completion_id] = note.invocation_id
            elif entry.type == MessageType.CALL_COMPLETION:
                done.add(pb.NotificationTemplate.FromString(entry.body).completion_id)
        children = []
        for result, id_index in results.items():
            text = callee_ids.get(id_index)
            if result not in done and text is not None:
                try:
                    children.append(InvocationId.parse(text))
                except IdError:
                    continue  # we wrote it: cannot happen
        return children

    def _purge_completed(self, st: InvocationStatus) -> ControlOutcome:
        if not st.is_completed:
            return ControlOutcome.NOT_COMPLETED
        self._purge(st.id)
        if _is_run(st.target):
            self._clear_workflow(st.target)
        return ControlOutcome.DONE

    def _purge_journal(self, st: InvocationStatus) -> ControlOutcome:
        if not st.is_completed:
            return ControlOutcome.NOT_COMPLETED
        st.journal_length = 0
        st.journal_retention = 0
        self._dirty(st)
        self._changes.journals_purged.append(st.id)
        return ControlOutcome.DONE

    def _pause(self, st: InvocationStatus) -> ControlOutcome:
        if st.status is Status.PAUSED:
            return ControlOutcome.ALREADY
        if st.status not in (Status.INVOKED, Status.BACKING_OFF):
            return ControlOutcome.NOT_RUNNING
        if st.status is Status.INVOKED:
            self._abort(st, Failure(500, "paused by an operator"))
        st.status = Status.PAUSED
        st.next_retry_at = None
        self._dirty(st)
        return ControlOutcome.DONE

    def _resume(
        self, st: InvocationStatus, choice: DeploymentChoice | None
    ) -> tuple[ControlOutcome, tuple[int, str] | None]:
        """Run a paused, suspended or backing-off invocation now, on ``choice``'s deployment."""
        if st.is_completed:
            return ControlOutcome.COMPLETED, None
        if st.status in (Status.SCHEDULED, Status.INBOXED):
            return ControlOutcome.NOT_STARTED, None
        if choice is not None and choice.wanted != KEEP_DEPLOYMENT:
            if st.deployment_id is None:
                # Nothing pinned yet: its first attempt takes the latest anyway.
                if choice.wanted != LATEST_DEPLOYMENT:
                    return ControlOutcome.CANNOT_REPIN, None
            else:
                refused, chosen, pinned = self._repin(st, choice)
                if refused is not None:
                    return refused, pinned
                if st.status is Status.INVOKED:
                    return ControlOutcome.CANNOT_REPIN, None  # not in the middle of an attempt
                st.deployment_id = chosen
                self._dirty(st)
        if st.status is not Status.INVOKED:
            st.attempt_failures = 0  # a new run of attempts
            self._start_attempt(st)
        return ControlOutcome.DONE, None

    # --- Ingress queries

    def _on_attach(self, cmd: Attach) -> None:
        st = self._get(cmd.invocation_id)
        if st is None:
            self._effects.append(Reply(cmd.reply, None))
        elif st.is_completed:
            self._effects.append(self._stored_reply(cmd.reply, st))
        else:
            self._effects.append(Reply(cmd.reply, st.id, pending=cmd.wait, target=st.target))


def state_version(state: Mapping[bytes, bytes]) -> str:
    """The official opaque version of an object's state (sha256 of its sorted entries)."""
    digest = hashlib.sha256()
    for i, (name, value) in enumerate(sorted(state.items())):
        digest.update(i.to_bytes(8, "big") + b"\x01" + name + b"\x02" + value + b"\x03")
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


_CONTROLS = {
    ControlAction.CANCEL: PartitionMachine._cancel,
    ControlAction.KILL: PartitionMachine._kill,
    ControlAction.PURGE: PartitionMachine._purge_completed,
    ControlAction.PURGE_JOURNAL: PartitionMachine._purge_journal,
    ControlAction.PAUSE: PartitionMachine._pause,
}

_STATE_READS = frozenset(
    {MessageType.GET_LAZY_STATE_COMMAND, MessageType.GET_LAZY_STATE_KEYS_COMMAND}
)

_PROMISE_COMMANDS = frozenset(
    {
        MessageType.GET_PROMISE_COMMAND,
        MessageType.PEEK_PROMISE_COMMAND,
        MessageType.COMPLETE_PROMISE_COMMAND,
    }
)
# Commands that read an object's state or a workflow's promises (preloaded per batch).
_KEYED_READS = _STATE_READS | _PROMISE_COMMANDS

_COMMAND_HANDLERS = {
    MessageType.OUTPUT_COMMAND: PartitionMachine._cmd_output,
    MessageType.SET_STATE_COMMAND: PartitionMachine._cmd_set_state,
    MessageType.CLEAR_STATE_COMMAND: PartitionMachine._cmd_clear_state,
    MessageType.CLEAR_ALL_STATE_COMMAND: PartitionMachine._cmd_clear_all_state,
    MessageType.GET_LAZY_STATE_COMMAND: PartitionMachine._cmd_get_lazy_state,
    MessageType.GET_LAZY_STATE_KEYS_COMMAND: PartitionMachine._cmd_get_lazy_state_keys,
    MessageType.SLEEP_COMMAND: PartitionMachine._cmd_sleep,
    MessageType.CALL_COMMAND: PartitionMachine._cmd_call,
    MessageType.ONE_WAY_CALL_COMMAND: PartitionMachine._cmd_call,
    MessageType.COMPLETE_AWAKEABLE_COMMAND: PartitionMachine._cmd_complete_awakeable,
    MessageType.SEND_SIGNAL_COMMAND: PartitionMachine._cmd_send_signal,
    MessageType.GET_PROMISE_COMMAND: PartitionMachine._cmd_get_promise,
    MessageType.PEEK_PROMISE_COMMAND: PartitionMachine._cmd_peek_promise,
    MessageType.COMPLETE_PROMISE_COMMAND: PartitionMachine._cmd_complete_promise,
    MessageType.ATTACH_INVOCATION_COMMAND: PartitionMachine._cmd_attach,
    MessageType.GET_INVOCATION_OUTPUT_COMMAND: PartitionMachine._cmd_get_output,
}
