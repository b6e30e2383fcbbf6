"""Values shared by the entry JSON builders (command_json, notification_json).

The official server decodes each stored entry into its Rust journal types (restate-types
``journal_v2``: ``Entry``, and the lighter ``EntryLite``) and serializes them with serde
for sys_journal's entry_json and entry_lite_json. The official CLI deserializes
entry_json back into ``Entry`` to show an entry's details (a sleep's wake-up time, a
call's target and callee, a state or promise key...) and shows none when that fails. So
the builders produce exactly serde's shapes: enums externally tagged (``{"Variant":
value}``, unit variants as ``"Variant"``), struct fields in declaration order, bytes as
arrays of numbers, absent options as null. What the official could not decode (a
required field missing, a key that is not UTF-8, a bad id) raises BadEntry: no JSON.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from pyrestate.core.ids import AwakeableId, IdError, InvocationId
from pyrestate.protocol import service_protocol_pb2 as pb

Json = dict[str, Any]


class BadEntry(ValueError):
    """The entry does not decode into the official journal types."""


def utf8(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise BadEntry("not UTF-8") from None


def invocation_id(text: str) -> str:
    try:
        return str(InvocationId.parse(text))
    except IdError:
        raise BadEntry(f"bad invocation id {text!r}") from None


def awakeable_id(text: str) -> str:
    try:
        return str(AwakeableId.parse(text))
    except IdError:
        raise BadEntry(f"bad awakeable id {text!r}") from None


def required(msg: Message, field: str) -> Any:
    if not msg.HasField(field):
        raise BadEntry(f"missing {field}")
    return getattr(msg, field)


def state_keys(keys: pb.StateKeys) -> list[str]:
    return [utf8(k) for k in keys.keys]


def headers(items: Any) -> list[Json]:
    return [{"name": h.key, "value": h.value} for h in items]


def failure(f: pb.Failure) -> Json:
    out: Json = {"code": f.code, "message": f.message}
    if f.metadata:  # serde skips an empty list
        out["metadata"] = [{"key": m.key, "value": m.value} for m in f.metadata]
    return out


# Result variants by the protobuf field that carries them.
_VARIANTS = {
    "void": "Void",
    "value": "Success",
    "completion_value": "Success",
    "failure": "Failure",
    "completion_failure": "Failure",
    "invocation_id": "InvocationId",
    "state_keys": "StateKeys",
}
SUCCESS_FAILURE = ("Success", "Failure")
ANY_RESULT = ("Void", "Success", "Failure")


def variant(msg: Message, oneof: str, allowed: tuple[str, ...]) -> str:
    """The variant set in ``oneof`` ("Void", "Success", ...): required, one of ``allowed``
    (a field the official message lacks would be unknown to it, so missing)."""
    field = msg.WhichOneof(oneof)
    name = _VARIANTS.get(field) if field is not None else None
    if name is None or name not in allowed:
        raise BadEntry(f"{oneof}: {field}")
    return name


def result(msg: Message, oneof: str, allowed: tuple[str, ...]) -> Any:
    """A result enum in full: ``"Void"``, ``{"Success": [...]}`` or ``{"Failure": {...}}``."""
    name = variant(msg, oneof, allowed)
    if name == "Success":
        return {"Success": list(getattr(msg, msg.WhichOneof(oneof)).content)}
    if name == "Failure":
        return {"Failure": failure(getattr(msg, msg.WhichOneof(oneof)))}
    return name


def signal_id(msg: Message, oneof: str, index: str, name: str) -> Json:
    which = msg.WhichOneof(oneof)
    if which == index:
        return {"Index": getattr(msg, index)}
    if which == name:
        return {"Name": getattr(msg, name)}
    raise BadEntry("no signal id")


def named(fields: Json, name: str) -> Json:
    """Lite entries that have a name field show it only when it is not empty."""
    if name:
        fields["name"] = name
    return fields
