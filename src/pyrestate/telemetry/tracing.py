"""Traces of invocations, in the official server's (1.7) shape.

Per invocation: ``ingress <target>`` (zero length, under the request's ``traceparent``),
``invocation-start <target>`` (from its creation until it first runs; its span id is
known in advance, see trace_context), one ``invocation-attempt <target>`` per attempt,
and ``invocation-end <target>`` (zero length). Every journal command is an event on its
attempt's span, as officially; besides, the actions a handler takes (calls, sends, sleeps,
runs, state, awakeables and promises) are child spans of the attempt, so that a trace
shows them on the timeline. A call's callee hangs under the calling attempt; a one-way
send starts a trace of its own, linked to the sending attempt. The SDK gets the attempt's
context as ``traceparent``/``tracestate``, so spans it creates join the trace.

Spans go to the exporter as each one ends (a suspended invocation's spans so far are
there while it sleeps). Nothing here is durable: a span open across a crash is lost.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyrestate import __version__
from pyrestate.core.commands import Invoke
from pyrestate.core.effects import Completed, Effect, StartAttempt
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import Target
from pyrestate.official_format import error_code_label
from pyrestate.protocol.frames import MessageType
from pyrestate.query.journal import entry_kind
from pyrestate.telemetry import otlp
from pyrestate.telemetry.trace_context import (
    Sampler,
    TraceRef,
    clean_tracestate,
    otlp_transport,
    parse_traceparent,
    sampler_from_env,
    start_span_id,
    traceparent,
)

log = logging.getLogger(__name__)

_SCOPE = "services"
_NEW_COMMAND = otlp.event_name("restate.invocation.lifecycle.new_command")
_RUN_ENDED = otlp.event_name("restate.invocation.lifecycle.run_ended")
_SUSPENDED = otlp.event_name("restate.invocation.lifecycle.suspended")
_RUNTIME_LINK = otlp.attributes(otlp.LINK_ATTRIBUTE, [("restate.runtime", True)])
_SUCCESS = otlp.attributes(otlp.SPAN_ATTRIBUTE, [("restate.invocation.result", "success")])
_MAX_CACHED = 10_000  # encoded names and attributes kept (targets and deployments are few)


def _short(target: Target) -> str:
    if target.key is None:
        return f"{target.service}/{target.handler}"
    return f"{target.service}/{{key}}/{target.handler}"


def _span_id() -> int:
    return random.getrandbits(64) or 1


_K = TypeVar("_K")
_V = TypeVar("_V")


class _Cache(dict[_K, _V]):
    """Encoded pieces that repeat (span names, constant attributes), bounded."""

    def put(self, key: _K, value: _V) -> _V:
        if len(self) >= _MAX_CACHED:
            self.clear()
        self[key] = value
        return value

    def get_or(self, key: _K, make: Callable[[], _V]) -> _V:
        found = self.get(key)
        return self.put(key, make()) if found is None else found


@dataclass(slots=True)
class AttemptSpan:
    """The span of one attempt, open while it runs; the invoker reports what happens."""

    tracer: Tracer
    trace_id: int
    span_id: int
    parent: int  # the invocation-start span
    state: str  # tracestate
    name: bytes
    attrs: bytes
    inv_attr: bytes  # the invocation id attribute, which its child spans carry
    start: int = field(default_factory=time.time_ns)
    events: list[bytes] = field(default_factory=list)
    runs: dict[int, tuple[bytes, int, int, bytes]] = field(default_factory=dict)
    ended: bool = False

    def headers(self) -> list[tuple[str, str]]:
        """What the SDK gets to join the trace (its spans hang under this attempt). The
        official server sends ``tracestate`` also when empty; left out then, as each
        header costs both sides an HPACK encoding per attempt."""
        parent = [("traceparent", traceparent(self.trace_id, self.span_id))]
        return [*parent, ("tracestate", self.state)] if self.state else parent

    def callee(self, send: bool) -> str:
        """The trace a call's callee starts under; a one-way send's callee links to it."""
        return TraceRef(self.trace_id, self.span_id, True, self.state, linked=send).text()

    def command(self, entry_type: int, message: Any, callee: Invoke | None) -> None:
        now = time.time_ns()
        tracer = self.tracer
        label = getattr(message, "name", "") if message is not None else ""
        attrs = tracer.command_attrs(entry_type, label)
        self.events.append(otlp.event(_NEW_COMMAND, now, attrs))
        if not tracer.journal_spans:
            return
        action = _action(entry_type, message, callee)
        if action is None:
            return
        name, extra = action
        child = (tracer.name(name), _span_id(), now, self._child_attrs(extra))
        if entry_type == MessageType.RUN_COMMAND:
            self.runs[message.result_completion_id] = child
            return
        end = now
        if entry_type == MessageType.SLEEP_COMMAND and message.wake_up_time:
            # A sleep's end is known: it shows on the timeline as long as it lasts.
            end = max(now, message.wake_up_time * 1_000_000)
        self._child(child, end)

    def _child_attrs(self, extra: list[tuple[str, otlp.AttributeValue]]) -> bytes:
        return self.inv_attr + otlp.attributes(otlp.SPAN_ATTRIBUTE, extra)

    def _child(self, child: tuple[bytes, int, int, bytes], end: int) -> None:
        name, span_id, start, attrs = child
        self.tracer.add(
            otlp.span(self.trace_id, span_id, self.span_id, self.state, name, start, end, attrs)
        )

    def run_ended(self, completion_id: int) -> None:
        now = time.time_ns()
        note = otlp.attributes(
            otlp.EVENT_ATTRIBUTE,
            [("restate.journal.notification.id", f"CompletionId: {completion_id}")],
        )
        self.events.append(otlp.event(_RUN_ENDED, now, note))
        child = self.runs.pop(completion_id, None)
        if child is not None:
            self._child(child, now)

    def end(self, outcome: str) -> None:
        """``outcome``: ended, suspended, failed (retried), aborted."""
        if self.ended:
            return
        self.ended = True
        now = time.time_ns()
        for child in self.runs.values():  # runs the attempt did not see through
            self._child(child, now)
        self.runs.clear()
        status, message = otlp.STATUS_UNSET, ""
        if outcome == "ended":
            status = otlp.STATUS_OK
        elif outcome == "suspended":
            self.events.append(otlp.event(_SUSPENDED, now))
        else:
            status, message = otlp.STATUS_ERROR, "transient failure"
        self.tracer.add(
            otlp.span(
                self.trace_id,
                self.span_id,
                self.parent,
                self.state,
                self.name,
                self.start,
                now,
                self.attrs,
                b"".join(self.events),
                status=status,
                message=message,
            )
        )


def _action(
    entry_type: int, message: Any, callee: Invoke | None
) -> tuple[str, list[tuple[str, otlp.AttributeValue]]] | None:
    """(span name, attributes) of a journal action shown as a child span, else None."""
    if entry_type in (MessageType.CALL_COMMAND, MessageType.ONE_WAY_CALL_COMMAND):
        if callee is None:
            return None
        verb = "call" if entry_type == MessageType.CALL_COMMAND else "send"
        return f"{verb} {_short(callee.target)}", [
            ("restate.callee.invocation.id", str(callee.invocation_id)),
            ("restate.callee.invocation.target", str(callee.target)),
        ]
    if entry_type == MessageType.SLEEP_COMMAND:
        return "sleep", []
    if entry_type == MessageType.RUN_COMMAND:
        return (f"run {message.name}" if message.name else "run"), []
    if entry_type in _STATE_ACTIONS:
        key = getattr(message, "key", b"")
        extra = [("restate.state.key", key.decode("utf-8", "replace"))] if key else []
        return _STATE_ACTIONS[entry_type], extra
    if entry_type in _PROMISE_ACTIONS:
        return f"{_PROMISE_ACTIONS[entry_type]} {message.key}", [
            ("restate.promise.name", message.key)
        ]
    if entry_type == MessageType.COMPLETE_AWAKEABLE_COMMAND:
        return "complete-awakeable", [("restate.awakeable.id", message.awakeable_id)]
    if entry_type == MessageType.SEND_SIGNAL_COMMAND:
        return "send-signal", []
    return None


_STATE_ACTIONS = {
    MessageType.GET_LAZY_STATE_COMMAND: "get-state",
    MessageType.GET_EAGER_STATE_COMMAND: "get-state",
    MessageType.SET_STATE_COMMAND: "set-state",
    MessageType.CLEAR_STATE_COMMAND: "clear-state",
    MessageType.CLEAR_ALL_STATE_COMMAND: "clear-all-state",
    MessageType.GET_LAZY_STATE_KEYS_COMMAND: "get-state-keys",
    MessageType.GET_EAGER_STATE_KEYS_COMMAND: "get-state-keys",
}
_PROMISE_ACTIONS = {
    MessageType.GET_PROMISE_COMMAND: "get-promise",
    MessageType.PEEK_PROMISE_COMMAND: "peek-promise",
    MessageType.COMPLETE_PROMISE_COMMAND: "complete-promise",
}


@dataclass(frozen=True, slots=True)
class _Shape:
    """What the spans of every invocation of one target share, encoded once: span names
    and the ``rpc.*`` attributes."""

    ingress: bytes
    kafka: bytes  # ingress_kafka: made from a Kafka record
    start: bytes
    attempt: bytes
    end: bytes
    rpc: bytes


class Tracer:
    """Builds the spans and hands each, once ended, to the exporter."""

    def __init__(
        self,
        exporter: otlp.Exporter,
        journal_spans: bool = True,
        sampler: Sampler | None = None,
    ) -> None:
        self._exporter = exporter
        self.add = exporter.add
        self.journal_spans = journal_spans
        self._sampler = sampler or Sampler()
        self._names: _Cache[str, bytes] = _Cache()
        self._commands: _Cache[tuple[int, str], bytes] = _Cache()  # new_command attributes
        self._clients: _Cache[tuple[str, int], bytes] = _Cache()
        self._kafka: _Cache[tuple[str, str, int], bytes] = _Cache()  # group, topic, partition
        self._deployments: _Cache[tuple[str, str, int], bytes] = _Cache()
        self._shapes: _Cache[tuple[str, str, bool], _Shape] = _Cache()
        # Per live invocation (by id text), what its spans share and its id attribute;
        # dropped at its end.
        self._invocations: _Cache[str, tuple[bytes, bytes]] = _Cache()
        # Trace texts read back (an invocation's is read at each attempt and at its end).
        self._refs: _Cache[str, TraceRef] = _Cache()

    def shutdown(self) -> None:
        """Send what is queued (blocking: call off the event loop)."""
        self._exporter.shutdown()

    # --- encoded pieces, once each

    def name(self, text: str) -> bytes:
        return self._names.get_or(text, lambda: otlp.name_field(text))

    def _shape(self, target: Target) -> _Shape:
        key = (target.service, target.handler, target.key is None)
        shape = self._shapes.get(key)
        if shape is None:
            short = _short(target)
            rpc = [("rpc.service", target.service), ("rpc.method", target.handler)]
            shape = self._shapes.put(
                key,
                _Shape(
                    otlp.name_field(f"ingress {short}"),
                    otlp.name_field(f"ingress_kafka {short}"),
                    otlp.name_field(f"invocation-start {short}"),
                    otlp.name_field(f"invocation-attempt {short}"),
                    otlp.name_field(f"invocation-end {short}"),
                    otlp.attributes(otlp.SPAN_ATTRIBUTE, rpc),
                ),
            )
        return shape

    def _common(self, inv: InvocationId, target: Target, shape: _Shape) -> tuple[bytes, bytes]:
        """The attributes an invocation's spans share (target, invocation id), and the id
        attribute alone (for child spans)."""
        text = str(inv)
        found = self._invocations.get(text)
        if found is None:
            own = otlp.attributes(otlp.SPAN_ATTRIBUTE, [("restate.invocation.id", text)])
            named = [("restate.invocation.target", str(target))]
            common = shape.rpc + own + otlp.attributes(otlp.SPAN_ATTRIBUTE, named)
            found = self._invocations.put(text, (common, own))
        return found

    def _ref(self, text: str | None) -> TraceRef | None:
        if text is None:
            return None
        ref = self._refs.get(text)
        if ref is None:
            ref = TraceRef.parse(text)
            if ref is not None:
                self._refs.put(text, ref)
        return ref

    def command_attrs(self, entry_type: int, label: str) -> bytes:
        key = (entry_type, label)
        found = self._commands.get(key)
        if found is not None:
            return found
        kind = entry_kind(entry_type)
        values: list[tuple[str, otlp.AttributeValue]] = [
            ("restate.journal.command.type", f"Command/{kind[1] if kind else entry_type}")
        ]
        if label:
            values.append(("restate.journal.command.name", label))
        return self._commands.put(key, otlp.attributes(otlp.EVENT_ATTRIBUTE, values))

    # --- the ingress

    def ingress(
        self,
        inv: InvocationId,
        target: Target,
        headers: Mapping[str, str],
        client: tuple[str, int] | None,
    ) -> str | None:
        """Emit the ingress span; the trace the invocation keeps (None: not sampled)."""
        incoming = parse_traceparent(headers.get("traceparent"))
        trace_id, parent, parent_sampled = incoming or (random.getrandbits(128) or 1, 0, None)
        if not self._sampler.sampled(trace_id, parent_sampled):
            return None
        state = clean_tracestate(headers.get("tracestate")) if incoming else ""
        shape = self._shape(target)
        peer = b""
        if client is not None:  # the same for every request of a connection
            peer = self._clients.get_or(
                client,
                lambda: otlp.attributes(
                    otlp.SPAN_ATTRIBUTE,
                    [("client.socket.address", client[0]), ("client.socket.port", client[1])],
                ),
            )
        return self._ingress_span(inv, target, shape, shape.ingress, peer, trace_id, parent, state)

    def kafka_ingress(
        self, inv: InvocationId, target: Target, group: str, topic: str, partition: int, offset: int
    ) -> str | None:
        """Emit the ``ingress_kafka`` span of an invocation made from a Kafka record: the
        root of a trace of its own (the record's headers are not read for a context, as
        officially); the trace the invocation keeps (None: not sampled)."""
        trace_id = random.getrandbits(128) or 1
        if not self._sampler.sampled(trace_id, None):
            return None
        source = self._kafka.get_or(
            (group, topic, partition),
            lambda: otlp.attributes(
                otlp.SPAN_ATTRIBUTE,
                [
                    ("messaging.system", "kafka"),
                    ("messaging.consumer.group.name", group),
                    ("messaging.operation.type", "process"),
                    ("messaging.source.partition.id", partition),
                    ("messaging.source.name", topic),
                ],
            ),
        )
        record = otlp.attributes(otlp.SPAN_ATTRIBUTE, [("messaging.kafka.offset", offset)])
        shape = self._shape(target)
        return self._ingress_span(inv, target, shape, shape.kafka, source + record, trace_id)

    def _ingress_span(
        self,
        inv: InvocationId,
        target: Target,
        shape: _Shape,
        name: bytes,
        extra: bytes,
        trace_id: int,
        parent: int = 0,
        state: str = "",
    ) -> str:
        """A zero-length span where an invocation enters (under ``parent``, if not 0); the
        invocation's trace text."""
        span_id = _span_id()
        attrs = self._common(inv, target, shape)[0] + extra
        now = time.time_ns()
        self.add(otlp.span(trace_id, span_id, parent, state, name, now, now, attrs))
        ref = TraceRef(trace_id, span_id, True, state)
        text = ref.text()
        self._refs.put(text, ref)
        return text

    # --- the invoker

    def attempt(self, start: StartAttempt, deployment: tuple[str, str, int]) -> AttemptSpan | None:
        """The span of an attempt beginning now (and, for the first one, the invocation's
        start span). ``deployment``: (id, address, protocol version)."""
        ref = self._ref(start.trace)
        if ref is None or not ref.sampled:
            return None
        inv, target = start.invocation_id, start.target
        shape = self._shape(target)
        common, inv_attr = self._common(inv, target, shape)
        trace_id = ref.own_trace(inv)
        start_id = start_span_id(inv)
        if start.attempt == 1:
            self._start_span(start, ref, trace_id, start_id, shape.start, common)
        dep = self._deployments.get_or(
            deployment,
            lambda: otlp.attributes(
                otlp.SPAN_ATTRIBUTE,
                [
                    ("rpc.system", "restate"),
                    ("restate.deployment.id", deployment[0]),
                    ("restate.deployment.address", deployment[1]),
                    ("restate.deployment.service_protocol_version", deployment[2]),
                ],
            ),
        )
        return AttemptSpan(
            self, trace_id, _span_id(), start_id, ref.state, shape.attempt, dep + common, inv_attr
        )

    def _start_span(
        self,
        start: StartAttempt,
        ref: TraceRef,
        trace_id: int,
        span_id: int,
        name: bytes,
        attrs: bytes,
    ) -> None:
        now = time.time_ns()
        links = b""
        parent = ref.parent
        if ref.linked:
            links = otlp.link(ref.trace_id, ref.parent, ref.state, _RUNTIME_LINK)
            parent = 0
        began = min(start.created_at * 1_000_000, now)
        self.add(
            otlp.span(trace_id, span_id, parent, ref.state, name, began, now, attrs, b"", links)
        )

    # --- the partition

    def observe(self, effects: list[Effect]) -> None:
        """A committed batch's effects: the invocations it completed end their traces."""
        for effect in effects:
            if type(effect) is Completed and effect.trace is not None:
                self.completed(effect)

    def completed(self, done: Completed) -> None:
        """The invocation-end span of a completed invocation."""
        ref = self._ref(done.trace)
        if ref is None or not ref.sampled or done.target is None:
            return
        inv, target = done.invocation_id, done.target
        shape = self._shape(target)
        attrs = self._common(inv, target, shape)[0]
        del self._invocations[str(inv)]  # its last span
        failure = done.output.failure
        if failure is None:
            attrs += _SUCCESS
            status, message = otlp.STATUS_OK, ""
        else:
            attrs += otlp.attributes(
                otlp.SPAN_ATTRIBUTE,
                [
                    ("restate.invocation.result", "failure"),
                    ("error.message", failure.message),
                    ("restate.invocation.error.code", error_code_label(failure.code)),
                ],
            )
            status, message = otlp.STATUS_ERROR, failure.message
        now = time.time_ns()
        trace_id = ref.own_trace(inv)
        parent = start_span_id(inv)
        self.add(
            otlp.span(
                trace_id,
                _span_id(),
                parent,
                ref.state,
                shape.end,
                now,
                now,
                attrs,
                status=status,
                message=message,
            )
        )


def tracer_for(
    endpoint: str,
    headers: Mapping[str, str],
    journal_spans: bool,
    env: Mapping[str, str],
    instance: str = "localcluster/pyrestate",
) -> Tracer:
    """A tracer exporting to ``endpoint`` (EndpointError if its scheme is unknown)."""
    kind, where, secure = otlp_transport(endpoint)
    resource = otlp.resource_from_env(
        {
            "service.name": "Restate",
            "service.namespace": "Restate",
            "service.instance.id": instance,
            "service.version": __version__,
        },
        env,
    )
    sampler, warning = sampler_from_env(env)
    if warning is not None:
        log.warning("%s", warning)
    exporter = otlp.Exporter(kind, where, secure, headers, resource, _SCOPE, env)
    return Tracer(exporter, journal_spans, sampler)
