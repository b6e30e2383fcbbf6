"""The official serde JSON of journal commands, full and lite (see entry_values).

``COMMANDS[type]`` is a pair of builders (full fields, lite fields), each taking the
parsed command message and, for calls and sends, the callee stored with the entry (its
id, type and retention: what the official keeps beside a call's body). Either raises
BadEntry where the official's decoding of that form fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyrestate.core.ids import new_invocation_id, partition_key_of
from pyrestate.protocol.frames import MessageType as M
from pyrestate.query import entry_values as v
from pyrestate.query.entry_values import BadEntry, Json

Build = Callable[[Any, Json | None], Json]


def _attach_target(msg: Any) -> Json:
    """``AttachInvocationTarget``. Partition keys are computed as pyrestate's ids have them
    (scopes, which pyrestate does not keep apart, are shown as given)."""
    which = msg.WhichOneof("target")
    if which == "invocation_id":
        return {"InvocationId": v.invocation_id(msg.invocation_id)}
    if which == "idempotent_request_target":
        t = msg.idempotent_request_target
        key = t.service_key if t.HasField("service_key") else None
        # The partition key of the request's id: that is what the official's id carries.
        pk = new_invocation_id(
            b"",
            service=t.service_name,
            handler=t.handler_name,
            key=key,
            idempotency_key=t.idempotency_key,
        ).partition_key
        return {
            "IdempotentRequest": {
                "service_name": t.service_name,
                "service_key": key,
                "service_handler": t.handler_name,
                "idempotency_key": t.idempotency_key,
                "scope": t.scope if t.HasField("scope") else None,
                "partition_key": pk,
            }
        }
    if which == "workflow_target":
        w = msg.workflow_target
        return {
            "Workflow": {
                "service_name": w.workflow_name,
                "key": w.workflow_key,
                "partition_key": partition_key_of(w.workflow_key),
                "scope": w.scope if w.HasField("scope") else None,
            }
        }
    raise BadEntry("no attach target")


# --- calls and sends

_HANDLER_TYPES = {"exclusive": "Exclusive", "shared": "Shared", "workflow": "Workflow"}
_TARGET_TYPES = {"virtual_object": "VirtualObject", "workflow": "Workflow"}
# The official's span context of a call made without tracing.
_NO_SPAN = {
    "span_context": {
        "trace_id": [0] * 16,
        "span_id": [0] * 8,
        "trace_flags": 0,
        "is_remote": False,
        "trace_state": "",
    },
    "cause": None,
}


def _callee(callee: Json | None) -> Json:
    # Entries stored before callees were (and those copied by restart-as-new) have none.
    if callee is None:
        raise BadEntry("the callee is unknown")
    return callee


def _target(msg: Any, callee: Json) -> Json:
    """``InvocationTarget``: the body names the handler, the callee tells its type."""
    scope = msg.scope if msg.HasField("scope") else None
    if callee["service_type"] == "service":
        return {"Service": {"name": msg.service_name, "handler": msg.handler_name, "scope": scope}}
    return {
        _TARGET_TYPES[callee["service_type"]]: {
            "name": msg.service_name,
            "key": msg.key,
            "handler": msg.handler_name,
            "handler_ty": _HANDLER_TYPES[callee["handler_type"]],
            "scope": scope,
        }
    }


def _duration(ms: int) -> Json:
    return {"secs": ms // 1000, "nanos": ms % 1000 * 1_000_000}


def _request(msg: Any, callee: Json) -> Json:
    out = {
        "invocation_id": callee["id"],
        "invocation_target": _target(msg, callee),
        "span_context": _NO_SPAN,
        "parameter": list(msg.parameter),
        "headers": v.headers(msg.headers),
        "idempotency_key": msg.idempotency_key if msg.HasField("idempotency_key") else None,
        "completion_retention_duration": _duration(callee["completion_retention"]),
        "journal_retention_duration": _duration(callee["journal_retention"]),
    }
    if msg.limit_key:  # serde skips an absent limit key
        out["limit_key"] = msg.limit_key
    return out


def _call_full(msg: Any, callee: Json | None, rest: Json) -> Json:
    return {"request": _request(msg, _callee(callee)), **rest, "name": msg.name}


def _call_lite(msg: Any, callee: Json | None, rest: Json) -> Json:
    c = _callee(callee)
    fields = {"invocation_id": c["id"], "invocation_target": _target(msg, c), **rest}
    return v.named(fields, msg.name)


def _call_ids(m: Any) -> Json:
    return {
        "invocation_id_completion_id": m.invocation_id_notification_idx,
        "result_completion_id": m.result_completion_id,
    }


def _send_ids(m: Any) -> Json:
    return {
        "invoke_time": m.invoke_time,
        "invocation_id_completion_id": m.invocation_id_notification_idx,
    }


# --- commands whose forms are a key and/or a completion id


def _keyed(key: Callable[[Any], str]) -> tuple[Build, Build]:
    """Commands of a key and a completion id (lazy state reads, promises)."""
    return (
        lambda m, _: {"key": key(m), "completion_id": m.result_completion_id, "name": m.name},
        lambda m, _: {"key": key(m), "completion_id": m.result_completion_id},
    )


def _state_key(m: Any) -> str:
    return v.utf8(m.key)  # bytes in the protocol, a string to the official


def _promise_key(m: Any) -> str:
    return m.key


# Attaching to an invocation and getting its output.
_TARGETED: tuple[Build, Build] = (
    lambda m, _: {
        "target": _attach_target(m),
        "completion_id": m.result_completion_id,
        "name": m.name,
    },
    lambda m, _: {"target": _attach_target(m), "completion_id": m.result_completion_id},
)

_EAGER = ("Void", "Success")

COMMANDS: dict[int, tuple[Build, Build]] = {
    M.INPUT_COMMAND: (
        lambda m, _: {
            "headers": v.headers(m.headers),
            "payload": list(v.required(m, "value").content),
            "name": m.name,
        },
        lambda m, _: {},
    ),
    M.OUTPUT_COMMAND: (
        lambda m, _: {"result": v.result(m, "result", v.SUCCESS_FAILURE), "name": m.name},
        lambda m, _: {"result": v.variant(m, "result", v.SUCCESS_FAILURE)},
    ),
    M.GET_LAZY_STATE_COMMAND: _keyed(_state_key),
    M.SET_STATE_COMMAND: (
        lambda m, _: {
            "key": v.utf8(m.key),
            "value": list(v.required(m, "value").content),
            "name": m.name,
        },
        lambda m, _: {"key": v.utf8(m.key)},
    ),
    M.CLEAR_STATE_COMMAND: (
        lambda m, _: {"key": v.utf8(m.key), "name": m.name},
        lambda m, _: {"key": v.utf8(m.key)},
    ),
    M.CLEAR_ALL_STATE_COMMAND: (lambda m, _: {"name": m.name}, lambda m, _: {}),
    M.GET_LAZY_STATE_KEYS_COMMAND: (
        lambda m, _: {"completion_id": m.result_completion_id, "name": m.name},
        lambda m, _: {"completion_id": m.result_completion_id},
    ),
    M.GET_EAGER_STATE_COMMAND: (
        lambda m, _: {
            "key": v.utf8(m.key),
            "result": v.result(m, "result", _EAGER),
            "name": m.name,
        },
        lambda m, _: {"key": v.utf8(m.key), "result": v.variant(m, "result", _EAGER)},
    ),
    M.GET_EAGER_STATE_KEYS_COMMAND: (
        lambda m, _: {"state_keys": v.state_keys(v.required(m, "value")), "name": m.name},
        lambda m, _: {},
    ),
    M.GET_PROMISE_COMMAND: _keyed(_promise_key),
    M.PEEK_PROMISE_COMMAND: _keyed(_promise_key),
    M.COMPLETE_PROMISE_COMMAND: (
        lambda m, _: {
            "key": m.key,
            "value": v.result(m, "completion", v.SUCCESS_FAILURE),
            "completion_id": m.result_completion_id,
            "name": m.name,
        },
        lambda m, _: {"key": m.key, "completion_id": m.result_completion_id},
    ),
    M.SLEEP_COMMAND: (
        lambda m, _: {
            "wake_up_time": m.wake_up_time,
            "completion_id": m.result_completion_id,
            "name": m.name,
        },
        lambda m, _: v.named(
            {"wake_up_time": m.wake_up_time, "completion_id": m.result_completion_id}, m.name
        ),
    ),
    M.CALL_COMMAND: (
        lambda m, c: _call_full(m, c, _call_ids(m)),
        lambda m, c: _call_lite(m, c, _call_ids(m)),
    ),
    M.ONE_WAY_CALL_COMMAND: (
        lambda m, c: _call_full(m, c, _send_ids(m)),
        lambda m, c: _call_lite(m, c, _send_ids(m)),
    ),
    M.SEND_SIGNAL_COMMAND: (
        lambda m, _: {
            "target_invocation_id": v.invocation_id(m.target_invocation_id),
            "signal_id": v.signal_id(m, "signal_id", "idx", "name"),
            "result": v.result(m, "result", v.ANY_RESULT),
            "name": m.entry_name,
        },
        lambda m, _: {
            "target_invocation_id": v.invocation_id(m.target_invocation_id),
            "signal_id": v.signal_id(m, "signal_id", "idx", "name"),
            "result": v.variant(m, "result", v.ANY_RESULT),
        },
    ),
    M.RUN_COMMAND: (
        lambda m, _: {"completion_id": m.result_completion_id, "name": m.name},
        lambda m, _: v.named({"completion_id": m.result_completion_id}, m.name),
    ),
    M.ATTACH_INVOCATION_COMMAND: _TARGETED,
    M.GET_INVOCATION_OUTPUT_COMMAND: _TARGETED,
    M.COMPLETE_AWAKEABLE_COMMAND: (
        lambda m, _: {
            "id": v.awakeable_id(m.awakeable_id),
            "result": v.result(m, "result", v.SUCCESS_FAILURE),
            "name": m.name,
        },
        lambda m, _: {
            "id": v.awakeable_id(m.awakeable_id),
            "result": v.variant(m, "result", v.SUCCESS_FAILURE),
        },
    ),
}
