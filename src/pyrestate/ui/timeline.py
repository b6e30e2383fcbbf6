"""An invocation's journal (rows of sys_journal) as the timeline its page shows.

Entries come as sys_journal's ``entry_json``: the official server's serde form of its
journal types (``{"Command": {"Call": {...}}}``, ``{"Notification": {"Completion":
{"Run": {...}}}}``, byte strings as arrays of numbers, results as ``"Void"``,
``{"Success": [...]}`` or ``{"Failure": {...}}``). Each command is one step with what
it sent (input, parameter, state key and value, promise...) and what came back: the
completion that answers it is folded into it (a run's result, a call's answer, a
sleep's wake-up). Signals stay steps of their own. An entry without JSON (one the server
cannot decode) is shown by its type and name alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pyrestate.ui.values import Shown, show_bytes, when_ms

# Fields that link a command to its completions: shown through what they link.
_COMPLETION_LINKS = ("completion_id", "result_completion_id", "invocation_id_completion_id")
# Links whose completion is the command's answer (not only its callee's id).
_ANSWER_LINKS = ("completion_id", "result_completion_id")
_LABELS = {
    "payload": "input",
    "invoke_time": "runs at",
    "wake_up_time": "wakes up at",
    "target_invocation_id": "target invocation",
    "id": "awakeable",
    "state_keys": "keys",
}


@dataclass(frozen=True, slots=True)
class Detail:
    label: str
    shown: Shown | None = None  # a payload
    text: str = ""  # or a plain value
    invocation: str | None = None  # or a link to another invocation's page


@dataclass(slots=True)
class Step:
    index: int  # of the entry in the journal
    kind: str  # "Command", "Notification" or "Unknown"
    type: str  # "Run", "Call", "Sleep", "Signal", ...
    name: str
    command_index: int | None  # among commands only (as last_failure_related_* counts)
    sent: list[Detail] = field(default_factory=list)
    result: list[Detail] = field(default_factory=list)
    awaits_result: bool = False  # an answer is expected but none is in the journal yet
    undecoded: bool = False  # the server gave no JSON for it


def _bytes(value: Any) -> bytes | None:
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b <= 255 for b in value):
        return bytes(value)
    return None


def _outcome(label: str, value: Any) -> Detail:
    """A result enum: ``"Void"``, ``{"Success": bytes}`` or ``{"Failure": {...}}``."""
    if value == "Void":
        return Detail(label, text="none")
    if isinstance(value, dict) and "Success" in value:
        return _payload(label, value["Success"])
    if isinstance(value, dict) and isinstance(value.get("Failure"), dict):
        failure = value["Failure"]
        return Detail("failure", text=f"[{failure.get('code', '?')}] {failure.get('message', '')}")
    return _plain(label, value)


def _payload(label: str, value: Any) -> Detail:
    return Detail(label, shown=show_bytes(_bytes(value) or b""))


def _plain(label: str, value: Any) -> Detail:
    if isinstance(value, (dict, list)):
        return Detail(label, text=json.dumps(value, ensure_ascii=False))
    return Detail(label, text=str(value))


def _target_text(target: Any) -> str:
    """An ``InvocationTarget`` as ``service[/key]/handler``."""
    if isinstance(target, dict) and len(target) == 1:
        t = next(iter(target.values()))
        if isinstance(t, dict):
            parts = [t.get("name"), t.get("key"), t.get("handler")]
            return "/".join(str(p) for p in parts if p is not None)
    return json.dumps(target, ensure_ascii=False)


def _attach_target(target: Any) -> Detail:
    """What an attach or get-output command waits on."""
    if isinstance(target, dict) and isinstance(target.get("InvocationId"), str):
        return Detail("invocation", invocation=target["InvocationId"])
    if isinstance(target, dict) and isinstance(target.get("Workflow"), dict):
        w = target["Workflow"]
        return Detail("workflow", text=f"{w.get('service_name')}/{w.get('key')}")
    if isinstance(target, dict) and isinstance(target.get("IdempotentRequest"), dict):
        r = target["IdempotentRequest"]
        parts = [r.get("service_name"), r.get("service_key"), r.get("service_handler")]
        where = "/".join(str(p) for p in parts if p is not None)
        return Detail("request", text=f"{where}, idempotency key {r.get('idempotency_key')}")
    return _plain("target", target)


def _request(request: dict[str, Any]) -> list[Detail]:
    """A call's or send's request: callee, target, parameter, headers, idempotency key."""
    out = []
    if isinstance(request.get("invocation_id"), str):
        out.append(Detail("callee", invocation=request["invocation_id"]))
    if "invocation_target" in request:
        out.append(Detail("target", text=_target_text(request["invocation_target"])))
    out.append(_payload("parameter", request.get("parameter", [])))
    out += _headers(request.get("headers"))
    if request.get("idempotency_key") is not None:
        out.append(Detail("idempotency key", text=str(request["idempotency_key"])))
    return out


def _headers(headers: Any) -> list[Detail]:
    if not isinstance(headers, list) or not headers:
        return []
    lines = [f"{h.get('name', '')}: {h.get('value', '')}" for h in headers if isinstance(h, dict)]
    return [Detail("headers", text="\n".join(lines))]


def _signal_id(value: Any) -> str:
    if isinstance(value, dict) and len(value) == 1:
        kind, ident = next(iter(value.items()))
        return f"{ident}" if kind == "Name" else f"#{ident}"
    return str(value)


def _details(fields: dict[str, Any]) -> list[Detail]:
    out: list[Detail] = []
    for key, value in fields.items():
        label = _LABELS.get(key, key.replace("_", " "))
        if key == "name" or key in _COMPLETION_LINKS:
            continue
        if key == "headers":
            out += _headers(value)
        elif key == "request" and isinstance(value, dict):
            out += _request(value)
        elif key in ("payload", "parameter", "value") and _bytes(value) is not None:
            out.append(_payload(label, value))
        elif key in ("result", "value"):
            out.append(_outcome(label, value))
        elif key in ("wake_up_time", "invoke_time") and isinstance(value, int):
            if value:  # a send's invoke time 0: at once
                out.append(Detail(label, text=when_ms(value)))
        elif key in ("target_invocation_id", "invocation_id") and isinstance(value, str):
            out.append(Detail("callee" if key == "invocation_id" else label, invocation=value))
        elif key == "target":
            out.append(_attach_target(value))
        elif key == "signal_id" or (key == "id" and isinstance(value, dict)):
            out.append(Detail("signal", text=_signal_id(value)))
        elif key == "state_keys" and isinstance(value, list):
            out.append(Detail(label, text=", ".join(map(str, value))))
        else:
            out.append(_plain(label, value))
    return out


@dataclass(frozen=True, slots=True)
class _Entry:
    index: int
    kind: str  # "Command", "Completion", "Signal" or "Unknown"
    type: str
    name: str
    fields: dict[str, Any] | None  # None: no JSON


def _entry(row: dict[str, Any]) -> _Entry:
    index = int(row["index"])
    group, _, ty = str(row.get("entry_type") or "").partition(": ")
    name = str(row.get("name") or "")
    try:
        value = json.loads(row["entry_json"]) if row.get("entry_json") else None
    except ValueError:
        value = None
    if isinstance(value, dict):
        command = value.get("Command")
        notification = value.get("Notification")
        if isinstance(command, dict) and len(command) == 1:
            ty, fields = next(iter(command.items()))
            if isinstance(fields, dict):
                return _Entry(index, "Command", ty, str(fields.get("name", name)), fields)
        if isinstance(notification, dict) and isinstance(notification.get("Completion"), dict):
            ty, fields = next(iter(notification["Completion"].items()), ("?", {}))
            return _Entry(index, "Completion", ty, "", fields if isinstance(fields, dict) else {})
        if isinstance(notification, dict) and isinstance(notification.get("Signal"), dict):
            return _Entry(index, "Signal", "Signal", "", notification["Signal"])
    kind = group if group in ("Command", "Notification") else "Unknown"
    return _Entry(index, kind, ty or "?", name, None)


def _answer(completion: dict[str, Any]) -> list[Detail]:
    details = _details(completion)
    return details or [Detail("result", text="done")]  # e.g. a sleep's: it woke up


def build(rows: list[dict[str, Any]]) -> list[Step]:
    """Steps of the journal rows (index, entry_type, name, entry_json), in journal order."""
    entries = sorted((_entry(r) for r in rows), key=lambda e: e.index)
    completions = {
        e.fields["completion_id"]: e
        for e in entries
        if e.kind == "Completion" and e.fields is not None and "completion_id" in e.fields
    }
    folded: set[int] = set()
    steps: list[Step] = []
    commands = 0
    for e in entries:
        if e.kind == "Completion" and e.index in folded:
            continue
        if e.kind == "Command":
            step = Step(e.index, "Command", e.type, e.name, commands)
            commands += 1
        else:
            kind = "Notification" if e.kind in ("Completion", "Signal") else e.kind
            step = Step(e.index, kind, e.type, e.name, None)
        steps.append(step)
        if e.fields is None:
            step.undecoded = True
            continue
        step.sent = _details(e.fields)
        if e.kind != "Command":
            continue
        for link in _COMPLETION_LINKS:
            done = completions.get(e.fields.get(link))
            if done is None or done.fields is None:
                expected = link in _ANSWER_LINKS and link in e.fields
                step.awaits_result = step.awaits_result or expected
                continue
            folded.add(done.index)
            step.result += [d for d in _answer(done.fields) if d not in step.sent]
    return steps
