"""sys_journal columns of one stored entry (message type + protobuf body, as on the wire).

The official server fills, for journals of service protocol 4 and later, the entry's type,
its name (commands only), its JSON forms (entry_json, entry_lite_json) and when it was
appended; completed, invoked_id, invoked_target, sleep_wakeup_at and promise_name stay
NULL there (they belong to the older journal format), and so they do here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import (
    COMMAND_RANGE,
    MESSAGE_CLASSES,
    NOTIFICATION_RANGE,
    MessageType,
)
from pyrestate.query import notification_json
from pyrestate.query.command_json import COMMANDS
from pyrestate.query.entry_values import BadEntry

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


def entry_type_name(entry_type: int) -> str | None:
    """The entry_type column: "Command: Run", "Notification: CallInvocationId", ..."""
    kind = entry_kind(entry_type)
    return f"{kind[0]}: {kind[1]}" if kind is not None else None


@dataclass(frozen=True, slots=True)
class EntryView:
    entry_type: str | None
    name: str | None
    entry_json: str | None
    entry_lite_json: str | None


_NOTHING = EntryView(None, None, None, None)


def _text(value: Any) -> str:
    # serde_json's compact form: no spaces, non-ASCII as is.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def describe(entry_type: int, body: bytes, callee: str | None = None) -> EntryView:
    """The columns of one entry; ``callee``: what storage keeps of a call's callee (JSON).

    As the official: no JSON for an entry it could not decode; no name either unless the
    full form decodes (it takes the name from there, after the lite form succeeded).
    """
    kind = entry_kind(entry_type)
    if kind is None:
        return _NOTHING
    group, name = kind
    shown = f"{group}: {name}"
    cls = MESSAGE_CLASSES[entry_type] if group == "Command" else pb.NotificationTemplate
    try:
        msg = cls.FromString(body)
    except DecodeError:
        return EntryView(shown, None, None, None)
    if group == "Command":
        full, lite = COMMANDS[entry_type]
        args: tuple[Any, ...] = (msg, json.loads(callee) if callee is not None else None)
    else:
        full, lite = notification_json.full, notification_json.lite
        args = (entry_type, name, msg)
    try:
        lite_json = lite(*args)
    except BadEntry:
        return EntryView(shown, None, None, None)
    try:
        full_json = full(*args)
    except BadEntry:
        return EntryView(shown, None, None, _text(_wrap(group, name, lite_json)))
    entry_name = full_json["name"] if group == "Command" else None
    return EntryView(
        shown,
        entry_name,
        _text(_wrap(group, name, full_json)),
        _text(_wrap(group, name, lite_json)),
    )


def _wrap(group: str, name: str, fields: dict[str, Any]) -> dict[str, Any]:
    # Notification builders give their whole form (its nesting depends on the type).
    return {"Command": {name: fields}} if group == "Command" else fields
