"""Runs invocation attempts against deployments and reports what happened as commands.

One asyncio task per running attempt. Effects from the partition (start an attempt,
forward a notification, ack a command) arrive through ``handle``; everything the SDK says
goes back to the partition as commands, never applied here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol
from urllib.parse import quote

from pyrestate.core.commands import (
    AppendCommand,
    AttemptEnded,
    AttemptFailed,
    Invoke,
    ProposeRunCompletion,
    Retention,
    RetryPolicy,
    Suspend,
)
from pyrestate.core.effects import AbortAttempt, Ack, Effect, Notify, StartAttempt
from pyrestate.core.ids import IdError, InvocationId, new_invocation_id, workflow_run_id
from pyrestate.core.limits import OutOfRange, epoch_ms
from pyrestate.core.model import CallerRef, Failure, JournalEntry, ServiceType, Target
from pyrestate.identity import RequestSigner
from pyrestate.invoker import attempt_protocol as ap
from pyrestate.invoker.transport import ClientStream, Transport, TransportError, open_transport
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType, ProtocolError
from pyrestate.storage.sqlite import SqlitePartitionStore

if TYPE_CHECKING:  # tracing (and OpenTelemetry) is loaded only when it is configured
    from pyrestate.telemetry.tracing import AttemptSpan, Tracer

log = logging.getLogger(__name__)

# Object state up to this size goes with the StartMessage; beyond it the SDK asks for
# each key it needs (lazy state), so that a large object never travels whole.
EAGER_STATE_LIMIT = 4 * 1024 * 1024

_STATE_COMMANDS = frozenset(
    {
        MessageType.GET_LAZY_STATE_COMMAND,
        MessageType.SET_STATE_COMMAND,
        MessageType.CLEAR_STATE_COMMAND,
        MessageType.CLEAR_ALL_STATE_COMMAND,
        MessageType.GET_LAZY_STATE_KEYS_COMMAND,
        MessageType.GET_EAGER_STATE_COMMAND,
        MessageType.GET_EAGER_STATE_KEYS_COMMAND,
    }
)
_PROMISE_COMMANDS = frozenset(
    {
        MessageType.GET_PROMISE_COMMAND,
        MessageType.PEEK_PROMISE_COMMAND,
        MessageType.COMPLETE_PROMISE_COMMAND,
    }
)
_SUBJECT_COMMANDS = frozenset(
    {MessageType.ATTACH_INVOCATION_COMMAND, MessageType.GET_INVOCATION_OUTPUT_COMMAND}
)
_WRITE_COMMANDS = frozenset(
    {
        MessageType.SET_STATE_COMMAND,
        MessageType.CLEAR_STATE_COMMAND,
        MessageType.CLEAR_ALL_STATE_COMMAND,
    }
)


class AttemptError(Exception):
    """This attempt failed; the invocation will be retried."""

    def __init__(self, message: str, code: int = 500) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    id: str
    uri: str
    http_version: str  # "HTTP/2.0" or "HTTP/1.1"
    bidi: bool
    protocol_version: int
    # They may hold credentials: never in a repr (a log line, a traceback).
    additional_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    inactivity_timeout_s: float = 60.0
    abort_timeout_s: float = 600.0
    retention: Retention = field(default_factory=Retention)
    lazy_state: bool = False  # the service asked for state on demand, never eagerly


class Schemas(Protocol):
    """What the invoker needs to know of registered services and deployments."""

    def target(self, service: str, handler: str, key: str | None) -> Target:
        """Resolve a call target; raises LookupError with the reason when unknown."""
        ...

    def service_config(self, service: str, handler: str) -> ServiceConfig: ...

    def deployment_for(self, service: str, pinned: str | None) -> DeploymentInfo:
        """The pinned deployment, else the one serving the service's latest revision."""
        ...


class Submitter(Protocol):
    def submit(self, command: object) -> None: ...


@dataclass(slots=True)
class _Attempt:
    start: StartAttempt
    task: asyncio.Task[None] | None = None
    stream: ClientStream | None = None
    live: bool = False  # start frames sent on a bidi stream: forward notifications now
    buffered: list[bytes] = field(default_factory=list)
    known_entries: int = 0
    span: AttemptSpan | None = None  # when tracing
    started: float = field(default_factory=time.perf_counter)
    # How it ended, for telemetry: ended, suspended, failed, aborted (None: failed).
    outcome: str | None = None


class Invoker:
    def __init__(
        self,
        partition: Submitter,
        store: SqlitePartitionStore,
        schemas: Schemas,
        signer: RequestSigner | None = None,
        clock_skew: Callable[[], int] | None = None,
        tracer: Tracer | None = None,
        on_attempt_end: Callable[[str, float], None] | None = None,
    ) -> None:
        """``clock_skew``: ms the partition's clock runs ahead of this process's (a test's
        virtual clock): the instants SDKs compute from their own clock move by as much."""
        self._signer = signer
        self._skew = clock_skew
        self._tracer = tracer
        # Told of every attempt's end: (outcome, seconds it took); for metrics.
        self._on_attempt_end = on_attempt_end
        self._partition = partition
        self._store = store
        self._schemas = schemas
        self._attempts: dict[InvocationId, _Attempt] = {}
        self._transports: dict[tuple[str, str], Transport] = {}
        # Set by aclose(): the server is stopping, attempts still running end unreported
        # and run again from the committed journal after the restart.
        self._closing = False

    async def aclose(self) -> None:
        self._closing = True
        for attempt in list(self._attempts.values()):
            if attempt.task is not None:
                attempt.task.cancel()
        tasks = [a.task for a in self._attempts.values() if a.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        for transport in self._transports.values():
            await transport.aclose()

    # --- Effects from the partition

    def handle(self, effect: Effect) -> None:
        if self._closing:
            return
        match effect:
            case StartAttempt():
                self._start(effect)
            case Notify():
                self._forward(effect.invocation_id, effect.attempt, effect.index, effect.entry)
            case Ack():
                attempt = self._attempts.get(effect.invocation_id)
                if attempt is not None and attempt.start.attempt == effect.attempt:
                    self._send(attempt, ap.ack_frame(effect.command_index))
            case AbortAttempt():
                attempt = self._attempts.get(effect.invocation_id)
                if attempt is not None and attempt.start.attempt == effect.attempt:
                    self._stop(attempt)
                self._report_failure(
                    effect.invocation_id,
                    effect.attempt,
                    effect.target,
                    effect.deployment_id,
                    AttemptError(effect.failure.message, effect.failure.code),
                )

    def _start(self, start: StartAttempt) -> None:
        previous = self._attempts.get(start.invocation_id)
        if previous is not None:
            self._stop(previous)
        attempt = _Attempt(start)
        # The journal read for the start frames stops at this length; later entries are
        # forwarded as they come.
        attempt.known_entries = start.journal_length
        self._attempts[start.invocation_id] = attempt
        try:
            dep = self._schemas.deployment_for(start.target.service, start.deployment_id)
        except Exception as e:  # e.g. no deployment for the service any more
            self._fail(start, AttemptError(str(e)), None)
            del self._attempts[start.invocation_id]
            return
        if self._tracer is not None:
            attempt.span = self._tracer.attempt(start, (dep.id, dep.uri, dep.protocol_version))
        attempt.task = asyncio.create_task(self._run(attempt, dep), name=str(start.invocation_id))

    def _forward(
        self, inv_id: InvocationId, attempt_no: int, index: int, entry: JournalEntry
    ) -> None:
        attempt = self._attempts.get(inv_id)
        if attempt is None or attempt.start.attempt != attempt_no or index < attempt.known_entries:
            return
        self._send(attempt, ap.notification_frame(entry))

    def _send(self, attempt: _Attempt, frame: bytes) -> None:
        if attempt.live and attempt.stream is not None:
            attempt.stream.write(frame)
        elif not attempt.live:
            attempt.buffered.append(frame)

    def transports(self) -> Mapping[tuple[str, str], Transport]:
        """The open transports by (deployment URI, HTTP version)."""
        return self._transports

    def _stop(self, attempt: _Attempt) -> None:
        attempt.outcome = attempt.outcome or "aborted"
        if attempt.task is not None:
            attempt.task.cancel()
        if self._attempts.get(attempt.start.invocation_id) is attempt:
            del self._attempts[attempt.start.invocation_id]

    # --- One attempt

    async def _start_frames(self, start: StartAttempt, dep: DeploymentInfo, lazy: bool) -> bytes:
        """StartMessage and the journal; storage is read off the event loop."""
        key = start.target.key
        journal = start.journal
        if journal is not None and (key is None or lazy):
            return self._encode_start(start, dep, journal, {} if key is None else None)
        store = self._store

        def read() -> tuple[tuple[JournalEntry, ...], dict[bytes, bytes] | None]:
            entries = journal or tuple(store.journal(start.invocation_id, start.journal_length))
            if key is None:
                return entries, {}
            if lazy:
                return entries, None
            return entries, store.state_within(start.target.service, key, EAGER_STATE_LIMIT)

        entries, state = await asyncio.get_running_loop().run_in_executor(None, read)
        return self._encode_start(start, dep, entries, state)

    @staticmethod
    def _encode_start(
        start: StartAttempt,
        dep: DeploymentInfo,
        journal: tuple[JournalEntry, ...],
        state: dict[bytes, bytes] | None,
    ) -> bytes:
        """``state`` None: partial (lazy) state, the SDK asks for what it needs."""
        return ap.start_frames(
            version=dep.protocol_version,
            invocation_id=start.invocation_id.to_bytes(),
            debug_id=str(start.invocation_id),
            key=start.target.key,
            journal=journal,
            known_entries=len(journal),
            state=state,
            retry_count=start.retry_count,
            since_last_entry_ms=start.since_progress_ms,
            random_seed=start.invocation_id.random_seed(),
        )

    async def _run(self, attempt: _Attempt, dep: DeploymentInfo) -> None:
        start = attempt.start
        try:
            config = self._config(start.target)
            start_frames = await self._start_frames(start, dep, config.lazy_state)
            await self._exchange(attempt, dep, config, start_frames)
        except asyncio.CancelledError:
            raise
        except AttemptError as e:
            self._fail(start, e, dep)
        except (TransportError, ProtocolError) as e:
            self._fail(start, AttemptError(str(e)), dep)
        except Exception as e:
            log.exception("attempt %s failed unexpectedly", start.invocation_id)
            self._fail(start, AttemptError(f"{type(e).__name__}: {e}"), dep)
        finally:
            self._ended(attempt)
            if attempt.stream is not None:
                attempt.stream.abort()
            if self._attempts.get(start.invocation_id) is attempt:
                del self._attempts[start.invocation_id]

    def _ended(self, attempt: _Attempt) -> None:
        outcome = attempt.outcome or ("aborted" if self._closing else "failed")
        if attempt.span is not None:
            attempt.span.end(outcome)
        if self._on_attempt_end is not None:
            self._on_attempt_end(outcome, time.perf_counter() - attempt.started)

    def _fail(self, start: StartAttempt, error: AttemptError, dep: DeploymentInfo | None) -> None:
        dep_id = dep.id if dep is not None else (start.deployment_id or "")
        self._report_failure(start.invocation_id, start.attempt, start.target, dep_id, error)

    def _report_failure(
        self, inv: InvocationId, attempt: int, target: Target, dep_id: str, error: AttemptError
    ) -> None:
        if self._closing:
            return
        self._partition.submit(
            AttemptFailed(
                inv,
                attempt,
                dep_id,
                Failure(error.code, str(error)),
                self._config(target).retry_policy,
            )
        )

    def _config(self, target: Target) -> ServiceConfig:
        try:
            return self._schemas.service_config(target.service, target.handler)
        except LookupError:
            return ServiceConfig()

    def _transport(self, dep: DeploymentInfo) -> Transport:
        key = (dep.uri, dep.http_version)
        transport = self._transports.get(key)
        if transport is None:
            transport = open_transport(dep.uri, dep.http_version)  # type: ignore[arg-type]
            self._transports[key] = transport
        return transport

    async def _exchange(
        self, attempt: _Attempt, dep: DeploymentInfo, config: ServiceConfig, frames: bytes
    ) -> None:
        start = attempt.start
        target = start.target
        ctype = ap.content_type(dep.protocol_version)
        headers = [
            ("content-type", ctype),
            ("accept", ctype),
            ("x-restate-invocation-id", str(start.invocation_id)),
            *dep.additional_headers,
        ]
        if target.key is not None:
            headers.append(("x-restate-service-key", quote(target.key, safe="")))
        path = f"/invoke/{target.service}/{target.handler}"
        if self._signer is not None:
            headers += self._signer.headers(path, target.key)
        if attempt.span is not None:
            headers += attempt.span.headers()
        stream = await self._transport(dep).open_stream(path, headers)
        attempt.stream = stream
        await stream.send(frames)
        if dep.bidi:
            attempt.live = True
            for frame in attempt.buffered:
                await stream.send(frame)
            attempt.buffered.clear()
        else:
            await stream.end_request()
        status, resp_headers = await asyncio.wait_for(
            stream.response_head(), config.inactivity_timeout_s
        )
        if status != 200:
            raise AttemptError(f"deployment answered with unexpected status {status}")
        got = resp_headers.get("content-type")
        if got != ctype:
            raise AttemptError(f"deployment answered with content-type {got!r}, expected {ctype!r}")
        protocol = ap.AttemptProtocol()
        inactivity = config.inactivity_timeout_s
        input_closed = not dep.bidi
        while True:
            try:
                timeout = config.abort_timeout_s if input_closed else inactivity
                chunk = await asyncio.wait_for(stream.receive(), timeout)
            except TimeoutError:
                if input_closed:
                    raise AttemptError(
                        f"no response from the deployment within the abort timeout "
                        f"of {config.abort_timeout_s:g}s"
                    ) from None
                # Inactive: close our side so the SDK suspends, then wait for its answer.
                input_closed = True
                attempt.live = False
                await stream.end_request()
                continue
            if chunk is None:
                raise AttemptError(
                    "the deployment closed the stream without End, Suspension or Error"
                )
            for event in protocol.feed(chunk):
                if self._report(attempt, dep, event):
                    if dep.bidi and not input_closed:
                        await stream.end_request()
                    return

    def _report(self, attempt: _Attempt, dep: DeploymentInfo, event: ap.Event) -> bool:
        """Turn one SDK event into a partition command. True when the attempt is over."""
        start = attempt.start
        inv, no, dep_id = start.invocation_id, start.attempt, dep.id
        submit = self._partition.submit
        match event:
            case ap.NewCommand():
                if self._skew is not None and event.entry.type in _TIMED_COMMANDS:
                    event = _shifted(event, self._skew())
                callee, subject = self._validate(start, event)
                span = attempt.span
                if span is not None:
                    if callee is not None:
                        send = event.entry.type == MessageType.ONE_WAY_CALL_COMMAND
                        callee = replace(callee, trace=span.callee(send))
                    span.command(event.entry.type, event.message, callee)
                submit(
                    AppendCommand(
                        inv,
                        no,
                        dep_id,
                        event.entry,
                        event.message,  # type: ignore[arg-type]
                        event.requires_ack,
                        callee,
                        subject,
                    )
                )
                return False
            case ap.RunProposal():
                if attempt.span is not None:
                    attempt.span.run_ended(event.completion_id)
                submit(ProposeRunCompletion(inv, no, dep_id, event.completion_id, event.entry))
                return False
            case ap.Suspended():
                attempt.outcome = "suspended"
                submit(Suspend(inv, no, dep_id, event.completions, event.signals))
                return True
            case ap.Errored():
                attempt.outcome = "failed"
                config = self._config(start.target)
                submit(
                    AttemptFailed(
                        inv,
                        no,
                        dep_id,
                        Failure(event.code, event.message),
                        config.retry_policy,
                        event.related,
                        event.next_retry_delay_ms,
                        terminal=event.fail,
                        pause=event.pause,
                    )
                )
                return True
            case ap.Ended():
                attempt.outcome = "ended"
                submit(AttemptEnded(inv, no, dep_id))
                return True
        return False

    def _validate(
        self, start: StartAttempt, event: ap.NewCommand
    ) -> tuple[Invoke | None, InvocationId | None]:
        """Check a command against the schema; resolve a call's callee, an attach's subject."""
        t = event.entry.type
        target = start.target
        if t in _PROMISE_COMMANDS and target.service_type is not ServiceType.WORKFLOW:
            raise AttemptError(
                f"service {target.service} is not a workflow: it has no durable promises", 571
            )
        if t in _SUBJECT_COMMANDS:
            return None, _subject(event.message)  # type: ignore[arg-type]
        if t in _STATE_COMMANDS:
            if target.key is None:
                raise AttemptError(f"service {target.service} has no state: it is not keyed", 571)
            if t in _WRITE_COMMANDS and not target.holds_lock:
                raise AttemptError(f"handler {target} is shared and cannot write state", 571)
        if t == MessageType.SLEEP_COMMAND:
            sleep: pb.SleepCommandMessage = event.message  # type: ignore[assignment]
            _instant("SleepCommand.wake_up_time", sleep.wake_up_time)
        if t == MessageType.CALL_COMMAND:
            call: pb.CallCommandMessage = event.message  # type: ignore[assignment]
            return self._callee(
                call.service_name,
                call.handler_name,
                call.key,
                call.parameter,
                call.headers,
                call.idempotency_key if call.HasField("idempotency_key") else None,
                CallerRef(start.invocation_id, call.result_completion_id),
                None,
            ), None
        if t == MessageType.ONE_WAY_CALL_COMMAND:
            send: pb.OneWayCallCommandMessage = event.message  # type: ignore[assignment]
            return self._callee(
                send.service_name,
                send.handler_name,
                send.key,
                send.parameter,
                send.headers,
                send.idempotency_key if send.HasField("idempotency_key") else None,
                None,
                _instant("OneWayCallCommand.invoke_time", send.invoke_time) or None,
            ), None
        return None, None

    def _callee(
        self,
        service: str,
        handler: str,
        key: str,
        parameter: bytes,
        headers: object,
        idempotency_key: str | None,
        caller: CallerRef | None,
        execution_time: int | None,
    ) -> Invoke:
        try:
            target = self._schemas.target(service, handler, key or None)
        except LookupError as e:
            raise AttemptError(str(e), 400) from None
        inv_id = target.new_invocation_id(os.urandom(24), idempotency_key)
        return Invoke(
            invocation_id=inv_id,
            target=target,
            input=parameter,
            headers=tuple((h.key, h.value) for h in headers),  # type: ignore[attr-defined]
            idempotency_key=idempotency_key,
            execution_time=execution_time,
            caller=caller,
            retention=self._config(target).retention,
        )


# Commands with an instant the SDK computed from its clock (a sleep, a delayed send).
_TIMED_COMMANDS = {
    MessageType.SLEEP_COMMAND: "wake_up_time",
    MessageType.ONE_WAY_CALL_COMMAND: "invoke_time",
}


def _shifted(event: ap.NewCommand, skew: int) -> ap.NewCommand:
    """``event`` with its instant ``skew`` ms later (0, "no instant", stays)."""
    message = event.message
    name = _TIMED_COMMANDS[event.entry.type]
    if message is None or skew == 0 or getattr(message, name) == 0:
        return event
    setattr(message, name, getattr(message, name) + skew)
    entry = JournalEntry(event.entry.type, message.SerializeToString())
    return replace(event, entry=entry)


def _subject(
    msg: pb.AttachInvocationCommandMessage | pb.GetInvocationOutputCommandMessage,
) -> InvocationId:
    """The invocation an attach or get-output command asks about, as the official finds it."""
    which = msg.WhichOneof("target")
    if which == "invocation_id":
        try:
            return InvocationId.parse(msg.invocation_id)
        except IdError as e:
            raise AttemptError(f"bad invocation id '{msg.invocation_id}': {e}", 400) from None
    if which == "idempotent_request_target":
        t = msg.idempotent_request_target
        return new_invocation_id(
            b"",
            service=t.service_name,
            handler=t.handler_name,
            key=t.service_key if t.HasField("service_key") else None,
            idempotency_key=t.idempotency_key,
        )
    if which == "workflow_target":
        return workflow_run_id(msg.workflow_target.workflow_name, msg.workflow_target.workflow_key)
    raise AttemptError(f"protocol violation: {type(msg).__name__} without a target", 571)


def _instant(name: str, value: int) -> int:
    """An epoch-ms time from the deployment, or an attempt failure naming it (code 571)."""
    try:
        return epoch_ms(name, value)
    except OutOfRange as e:
        raise AttemptError(f"protocol violation: {e}", ap.PROTOCOL_VIOLATION) from None
