"""sys_journal columns of one stored entry (message type + protobuf body, as on the wire)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import Message

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import (
    COMMAND_RANGE,
    MESSAGE_CLASSES,
    NOTIFICATION_RANGE,
    MessageType,
)

# Notification types whose name differs from their command's (the rest share it).
_NOTIFICATION_NAMES = {
    MessageType.CALL_INVOCATION_ID_COMPLETION: "CallInvocationId",
    MessageType.SIGNAL_NOTIFICATION: "Signal",
}


def _camel(name: str) -> str:
    words = name.split("_")[:-1]  # drop COMMAND / COMPLETION
    return "".join(w.capitalize() for w in words)


def entry_kind(entry_type: int) -> tuple[str, str] | None:
    """("Command" | "Notification", official name), None for unknown types."""
    try:
        mt = MessageType(entry_type)
    except ValueError:
        return None
    if entry_type in COMMAND_RANGE:
        return "Command", _camel(mt.name)
    if entry_type in NOTIFICATION_RANGE:
        return "Notification", _NOTIFICATION_NAMES.get(mt, _camel(mt.name))
    return None


@dataclass(slots=True)
class EntryView:
    entry_type: str | None
    name: str | None
    invoked_target: str | None
    sleep_wakeup_at: int | None
    promise_name: str | None
    entry_json: str | None
    entry_lite_json: str | None


def _plain(msg: Message) -> dict[str, Any]:
    """Fields set on ``msg`` as JSON values (bytes as arrays of numbers, as officially)."""
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        if fd.is_repeated:
            out[fd.name] = [_value(v) for v in value]
        else:
            out[fd.name] = _value(value)
    return out


def _value(v: Any) -> Any:
    if isinstance(v, Message):
        return _plain(v)
    if isinstance(v, bytes):
        return list(v)
    return v


def describe(entry_type: int, body: bytes) -> EntryView:
    kind = entry_kind(entry_type)
    if kind is None:
        return EntryView(None, None, None, None, None, None, None)
    group, name = kind
    cls = MESSAGE_CLASSES.get(entry_type) if group == "Command" else pb.NotificationTemplate
    msg: Message | None = None
    if cls is not None:
        msg = cls()
        try:
            msg.ParseFromString(body)
        except Exception:  # a damaged entry still gets a row, without its details
            msg = None
    fields = _plain(msg) if msg is not None else {}
    entry_name = fields.get("name", "") if group == "Command" else None
    target = None
    if entry_type in (MessageType.CALL_COMMAND, MessageType.ONE_WAY_CALL_COMMAND):
        key = fields.get("key")
        svc, handler = fields.get("service_name", ""), fields.get("handler_name", "")
        target = f"{svc}/{key}/{handler}" if key else f"{svc}/{handler}"
    wake = fields.get("wake_up_time") if entry_type == MessageType.SLEEP_COMMAND else None
    promise = None
    if entry_type in (
        MessageType.GET_PROMISE_COMMAND,
        MessageType.PEEK_PROMISE_COMMAND,
        MessageType.COMPLETE_PROMISE_COMMAND,
    ):
        promise = fields.get("key")
    if group == "Command":
        full = {"Command": {name: fields}}
        lite: dict[str, Any] = {"Command": {name: {}}}
    else:
        full = {"Notification": {"ty": name, **fields}}
        lite = {"Notification": {"ty": name}}
    return EntryView(
        entry_type=f"{group}: {name}",
        name=entry_name,
        invoked_target=target,
        sleep_wakeup_at=wake,
        promise_name=promise,
        entry_json=json.dumps(full, separators=(",", ":"), ensure_ascii=False),
        entry_lite_json=json.dumps(lite, separators=(",", ":")),
    )
