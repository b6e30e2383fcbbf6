"""The official serde JSON of journal notifications, full and lite (see entry_values).

Every notification is stored in the layout of ``NotificationTemplate`` (its id, then one
result field); the official decodes each type into its own message, which knows only
the results that type can have.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType as M
from pyrestate.query import entry_values as v
from pyrestate.query.entry_values import BadEntry, Json


def _outcome(allowed: tuple[str, ...]) -> Callable[[pb.NotificationTemplate], Json]:
    return lambda n: {"completion_id": n.completion_id, "result": v.result(n, "result", allowed)}


def _keys(n: pb.NotificationTemplate) -> Json:
    return {
        "completion_id": n.completion_id,
        "state_keys": v.state_keys(v.required(n, "state_keys")),
    }


def _invocation_id(n: pb.NotificationTemplate) -> Json:
    if n.WhichOneof("result") != "invocation_id":
        raise BadEntry("no invocation id")
    return {"completion_id": n.completion_id, "invocation_id": v.invocation_id(n.invocation_id)}


# Completion type -> the fields of its full form.
COMPLETIONS: dict[int, Callable[[pb.NotificationTemplate], Json]] = {
    M.GET_LAZY_STATE_COMPLETION: _outcome(("Void", "Success")),
    M.GET_LAZY_STATE_KEYS_COMPLETION: _keys,
    M.GET_PROMISE_COMPLETION: _outcome(v.SUCCESS_FAILURE),
    M.PEEK_PROMISE_COMPLETION: _outcome(v.ANY_RESULT),
    M.COMPLETE_PROMISE_COMPLETION: _outcome(("Void", "Failure")),
    M.SLEEP_COMPLETION: lambda n: {"completion_id": n.completion_id},
    M.CALL_INVOCATION_ID_COMPLETION: _invocation_id,
    M.CALL_COMPLETION: _outcome(v.SUCCESS_FAILURE),
    M.RUN_COMPLETION: _outcome(v.SUCCESS_FAILURE),
    M.ATTACH_INVOCATION_COMPLETION: _outcome(v.SUCCESS_FAILURE),
    M.GET_INVOCATION_OUTPUT_COMPLETION: _outcome(v.ANY_RESULT),
}


def full(entry_type: int, name: str, n: pb.NotificationTemplate) -> Json:
    if entry_type == M.SIGNAL_NOTIFICATION:
        signal = {
            "id": v.signal_id(n, "id", "signal_id", "signal_name"),
            "result": v.result(n, "result", v.ANY_RESULT),
        }
        return {"Notification": {"Signal": signal}}
    return {"Notification": {"Completion": {name: COMPLETIONS[entry_type](n)}}}


_LITE_IDS = {
    "completion_id": "CompletionId",
    "signal_id": "SignalIndex",
    "signal_name": "SignalName",
}
_LITE_RESULTS = ("Void", "Success", "Failure", "InvocationId", "StateKeys")


def lite(entry_type: int, name: str, n: pb.NotificationTemplate) -> Json:
    """``NotificationLite``: its type, its id and which kind of result it carries."""
    which = n.WhichOneof("id")
    if which is None:
        raise BadEntry("no notification id")
    ty: Any = "Signal" if entry_type == M.SIGNAL_NOTIFICATION else {"Completion": name}
    return {
        "Notification": {
            "ty": ty,
            "id": {_LITE_IDS[which]: getattr(n, which)},
            "result": v.variant(n, "result", _LITE_RESULTS),
        }
    }
