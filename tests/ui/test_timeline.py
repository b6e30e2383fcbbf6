"""Journal rows (as sys_journal gives them) become the steps of an invocation's timeline.

The entry_json values are the official serde forms, as a live server answered them.
"""

from __future__ import annotations

import json
from typing import Any

from pyrestate.ui.timeline import Detail, Step, build
from pyrestate.ui.values import show_bytes

CALLEE = "inv_1k0bvhI3I47M0lBqJzod7Btcr4kfqbE8e8"


def _row(index: int, entry: dict[str, Any] | None, entry_type: str = "", name: str = "") -> dict:
    row: dict[str, Any] = {"index": index, "entry_type": entry_type, "name": name}
    if entry is not None:
        row["entry_json"] = json.dumps(entry)
    return row


def _command(ty: str, **fields: Any) -> dict[str, Any]:
    return {"Command": {ty: {**fields, "name": fields.get("name", "")}}}


def _completion(ty: str, **fields: Any) -> dict[str, Any]:
    return {"Notification": {"Completion": {ty: fields}}}


def _bytes(text: str) -> list[int]:
    return list(text.encode())


def _labels(details: list[Detail]) -> dict[str, Detail]:
    return {d.label: d for d in details}


def _parent_journal() -> list[dict[str, Any]]:
    """Parent/callChild's journal while the child naps."""
    request = {
        "invocation_id": CALLEE,
        "invocation_target": {"Service": {"name": "Child", "handler": "nap", "scope": None}},
        "span_context": {"span_context": {"trace_id": [0] * 16}, "cause": None},
        "parameter": _bytes('"t9"'),
        "headers": [],
        "idempotency_key": None,
        "completion_retention_duration": {"secs": 86400, "nanos": 0},
        "journal_retention_duration": {"secs": 86400, "nanos": 0},
    }
    headers = [{"name": "content-type", "value": "application/json"}]
    return [
        _row(0, _command("Input", headers=headers, payload=_bytes('"t9"'))),
        _row(1, _command("Call", request=request, invocation_id_completion_id=1,
                         result_completion_id=2)),
        _row(2, _completion("CallInvocationId", completion_id=1, invocation_id=CALLEE)),
        _row(3, _command("Run", completion_id=3, name="note child")),
        _row(4, _completion("Run", completion_id=3, result={"Success": []})),
    ]  # fmt: skip


def test_completions_are_folded_into_the_commands_they_answer() -> None:
    steps = build(_parent_journal())
    assert [(s.index, s.type, s.name, s.command_index) for s in steps] == [
        (0, "Input", "", 0),
        (1, "Call", "", 1),
        (3, "Run", "note child", 2),
    ]
    inp, call, run = steps
    sent = _labels(inp.sent)
    assert sent["headers"].text == "content-type: application/json"
    assert sent["input"].shown == show_bytes(b'"t9"')
    call_sent = _labels(call.sent)
    assert call_sent["callee"].invocation == CALLEE
    assert call_sent["target"].text == "Child/nap"
    assert call_sent["parameter"].shown == show_bytes(b'"t9"')
    assert "idempotency key" not in call_sent
    # The callee's id came (and is not shown twice); its answer has not.
    assert call.result == []
    assert call.awaits_result
    # A run that returned nothing: done, with an empty value.
    assert not run.awaits_result
    assert run.result == [Detail("result", shown=show_bytes(b""))]


def test_results_failures_sleeps_state_promises_and_signals() -> None:
    down = {"Failure": {"code": 500, "message": "down"}}
    rows = [
        _row(0, _command("Input", headers=[], payload=[])),
        _row(1, _command("Sleep", wake_up_time=1795881184671, completion_id=1)),
        _row(2, _completion("Sleep", completion_id=1)),
        _row(3, _command("SetState", key="count", value=_bytes("5"))),
        _row(4, _command("GetEagerState", key="gone", result="Void")),
        _row(5, {"Notification": {"Signal": {"id": {"Index": 17}, "result": "Void"}}}),
        _row(6, _command("Run", completion_id=2, name="charge")),
        _row(7, _completion("Run", completion_id=2, result=down)),
        _row(8, _command("GetPromise", key="email-link", completion_id=3)),
        _row(9, _command("OneWayCall", request={"invocation_id": CALLEE, "parameter": []},
                         invoke_time=0, invocation_id_completion_id=4)),
        _row(10, _command("Output", result={"Success": _bytes('{"ok":true}')})),
        _row(11, None, "Command: Call", "undecodable"),
    ]  # fmt: skip
    steps = build(list(reversed(rows)))  # order comes from the index, not the rows
    by_index = {s.index: s for s in steps}
    assert set(by_index) == {0, 1, 3, 4, 5, 6, 8, 9, 10, 11}
    sleep = by_index[1]
    assert _labels(sleep.sent)["wakes up at"].text == "2026-11-28 15:53:04.671 UTC"
    assert sleep.result == [Detail("result", text="done")] and not sleep.awaits_result
    assert _labels(by_index[3].sent) == {
        "key": Detail("key", text="count"),
        "value": Detail("value", shown=show_bytes(b"5")),
    }
    assert _labels(by_index[4].sent)["result"].text == "none"
    signal = by_index[5]
    assert (signal.kind, signal.type, signal.command_index) == ("Notification", "Signal", None)
    assert _labels(signal.sent)["signal"].text == "#17"
    assert by_index[6].result == [Detail("failure", text="[500] down")]
    assert _labels(by_index[8].sent)["key"].text == "email-link" and by_index[8].awaits_result
    send = by_index[9]
    assert not send.awaits_result and "runs at" not in _labels(send.sent)
    assert _labels(by_index[10].sent)["result"].shown == show_bytes(b'{"ok":true}')
    assert by_index[11] == Step(11, "Command", "Call", "undecodable", 8, undecoded=True)
