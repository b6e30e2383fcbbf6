"""sys_journal's entry_json and entry_lite_json: the official server's serde shapes.

The golden rows were answered by the official restate-server 1.7.12 for the handlers of
examples/journal.py (tests/e2e/test_sql_journal.py runs them against both servers): the
same stored bodies must give the very same text here. The other cases build entries the
Python SDK does not write (lazy state, get-output, attach by key...) after the official
Rust types (restate-types journal_v2 command.rs, notification.rs, lite.rs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pyrestate.core.ids import InvocationId, partition_key_of
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType as M
from pyrestate.query.journal import describe, entry_kind

GOLDEN = json.loads(
    (Path(__file__).parent / "fixtures" / "official-journal-1.7.12.json").read_text()
)
ROWS = [row for journal in GOLDEN["journals"].values() for row in journal]
_TYPES = {f"{k[0]}: {k[1]}": t for t in M if (k := entry_kind(t)) is not None}
INV = str(InvocationId(7, bytes(range(16))))


def _callee_of(entry_json: str) -> str | None:
    """What storage keeps of a call's callee, read back from the official's JSON."""
    command = json.loads(entry_json)["Command"]
    call = command.get("Call") or command.get("OneWayCall")
    if call is None:
        return None
    request = call["request"]
    ((kind, target),) = request["invocation_target"].items()
    service_type = {"Service": "service", "VirtualObject": "virtual_object"}[kind]
    return json.dumps(
        {
            "id": request["invocation_id"],
            "service_type": service_type,
            "handler_type": target.get("handler_ty", "").lower() or None,
            "completion_retention": request["completion_retention_duration"]["secs"] * 1000,
            "journal_retention": request["journal_retention_duration"]["secs"] * 1000,
        }
    )


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r[0])
def test_the_official_servers_rows_from_the_same_bodies(row: list[Any]) -> None:
    entry_type, name, raw, entry_json, entry_lite_json = row
    callee = _callee_of(entry_json) if entry_type.startswith("Command") else None
    view = describe(_TYPES[entry_type], bytes.fromhex(raw), callee)
    assert view.entry_type == entry_type
    assert view.name == name
    assert view.entry_json == entry_json
    assert view.entry_lite_json == entry_lite_json


def test_the_golden_rows_cover_every_kind_the_python_sdk_writes() -> None:
    kinds = {r[0] for r in ROWS}
    assert len(kinds) == 26, sorted(kinds)


def _full(entry_type: int, msg: Any, callee: dict[str, Any] | None = None) -> Any:
    text = describe(entry_type, msg.SerializeToString(), json.dumps(callee) if callee else None)
    return json.loads(text.entry_json) if text.entry_json is not None else None


def _lite(entry_type: int, msg: Any, callee: dict[str, Any] | None = None) -> Any:
    text = describe(entry_type, msg.SerializeToString(), json.dumps(callee) if callee else None)
    return json.loads(text.entry_lite_json) if text.entry_lite_json is not None else None


def test_lazy_state_and_its_completions() -> None:
    get = pb.GetLazyStateCommandMessage(key=b"k", result_completion_id=3, name="n")
    assert _full(M.GET_LAZY_STATE_COMMAND, get) == {
        "Command": {"GetLazyState": {"key": "k", "completion_id": 3, "name": "n"}}
    }
    assert _lite(M.GET_LAZY_STATE_COMMAND, get) == {
        "Command": {"GetLazyState": {"key": "k", "completion_id": 3}}
    }
    keys = pb.GetLazyStateKeysCommandMessage(result_completion_id=4)
    assert _full(M.GET_LAZY_STATE_KEYS_COMMAND, keys) == {
        "Command": {"GetLazyStateKeys": {"completion_id": 4, "name": ""}}
    }
    void = pb.NotificationTemplate(completion_id=3, void=pb.Void())
    assert _full(M.GET_LAZY_STATE_COMPLETION, void) == {
        "Notification": {"Completion": {"GetLazyState": {"completion_id": 3, "result": "Void"}}}
    }
    value = pb.NotificationTemplate(completion_id=3, value=pb.Value(content=b"1"))
    assert _full(M.GET_LAZY_STATE_COMPLETION, value)["Notification"]["Completion"] == {
        "GetLazyState": {"completion_id": 3, "result": {"Success": [49]}}
    }
    listed = pb.NotificationTemplate(completion_id=4, state_keys=pb.StateKeys(keys=[b"a", b"b"]))
    assert _full(M.GET_LAZY_STATE_KEYS_COMPLETION, listed) == {
        "Notification": {
            "Completion": {"GetLazyStateKeys": {"completion_id": 4, "state_keys": ["a", "b"]}}
        }
    }
    assert _lite(M.GET_LAZY_STATE_KEYS_COMPLETION, listed) == {
        "Notification": {
            "ty": {"Completion": "GetLazyStateKeys"},
            "id": {"CompletionId": 4},
            "result": "StateKeys",
        }
    }


def test_get_invocation_output_and_attach_targets() -> None:
    by_id = pb.GetInvocationOutputCommandMessage(invocation_id=INV, result_completion_id=2)
    assert _full(M.GET_INVOCATION_OUTPUT_COMMAND, by_id) == {
        "Command": {
            "GetInvocationOutput": {
                "target": {"InvocationId": INV},
                "completion_id": 2,
                "name": "",
            }
        }
    }
    workflow = pb.AttachInvocationCommandMessage(
        workflow_target=pb.WorkflowTarget(workflow_name="Wf", workflow_key="w1"),
        result_completion_id=1,
    )
    assert _lite(M.ATTACH_INVOCATION_COMMAND, workflow) == {
        "Command": {
            "AttachInvocation": {
                "target": {
                    "Workflow": {
                        "service_name": "Wf",
                        "key": "w1",
                        "partition_key": partition_key_of("w1"),
                        "scope": None,
                    }
                },
                "completion_id": 1,
            }
        }
    }
    keyed = pb.IdempotentRequestTarget(
        service_name="Obj", service_key="k", handler_name="h", idempotency_key="ik"
    )
    attach = pb.AttachInvocationCommandMessage(idempotent_request_target=keyed)
    target = _full(M.ATTACH_INVOCATION_COMMAND, attach)["Command"]["AttachInvocation"]["target"]
    assert target == {
        "IdempotentRequest": {
            "service_name": "Obj",
            "service_key": "k",
            "service_handler": "h",
            "idempotency_key": "ik",
            "scope": None,
            "partition_key": partition_key_of("k"),
        }
    }
    void = pb.NotificationTemplate(completion_id=2, void=pb.Void())
    assert _full(M.GET_INVOCATION_OUTPUT_COMPLETION, void) == {
        "Notification": {
            "Completion": {"GetInvocationOutput": {"completion_id": 2, "result": "Void"}}
        }
    }


_OBJECT_CALLEE = {
    "id": INV,
    "service_type": "virtual_object",
    "handler_type": "shared",
    "completion_retention": 1_500,
    "journal_retention": 0,
}


def test_calls_take_the_callees_type_and_retention_from_storage() -> None:
    call = pb.CallCommandMessage(
        service_name="Obj",
        handler_name="get",
        key="k",
        parameter=b"1",
        headers=[pb.Header(key="h", value="v")],
        idempotency_key="ik",
        invocation_id_notification_idx=1,
        result_completion_id=2,
        name="ask",
    )
    request = _full(M.CALL_COMMAND, call, _OBJECT_CALLEE)["Command"]["Call"]["request"]
    assert request["invocation_target"] == {
        "VirtualObject": {
            "name": "Obj",
            "key": "k",
            "handler": "get",
            "handler_ty": "Shared",
            "scope": None,
        }
    }
    assert request["headers"] == [{"name": "h", "value": "v"}]
    assert request["idempotency_key"] == "ik"
    assert request["completion_retention_duration"] == {"secs": 1, "nanos": 500_000_000}
    assert request["journal_retention_duration"] == {"secs": 0, "nanos": 0}
    assert "limit_key" not in request
    lite = _lite(M.CALL_COMMAND, call, _OBJECT_CALLEE)["Command"]["Call"]
    assert list(lite) == [
        "invocation_id",
        "invocation_target",
        "invocation_id_completion_id",
        "result_completion_id",
        "name",
    ]
    workflow = dict(_OBJECT_CALLEE, service_type="workflow", handler_type="workflow")
    send = pb.OneWayCallCommandMessage(service_name="Wf", handler_name="run", key="w")
    sent = _full(M.ONE_WAY_CALL_COMMAND, send, workflow)["Command"]["OneWayCall"]
    assert sent["request"]["invocation_target"]["Workflow"]["handler_ty"] == "Workflow"
    assert "name" not in _lite(M.ONE_WAY_CALL_COMMAND, send, workflow)["Command"]["OneWayCall"]


def test_a_call_whose_callee_is_unknown_gets_no_json() -> None:
    # Entries written before callees were stored: the official would have had them.
    view = describe(M.CALL_COMMAND, pb.CallCommandMessage(service_name="S").SerializeToString())
    assert view.entry_type == "Command: Call"
    assert (view.name, view.entry_json, view.entry_lite_json) == (None, None, None)


def test_failures_show_their_metadata_only_when_they_have_some() -> None:
    failure = pb.Failure(code=409, message="no", metadata=[pb.FailureMetadata(key="a", value="b")])
    rejected = pb.CompleteAwakeableCommandMessage(awakeable_id="x", failure=failure)
    output = pb.OutputCommandMessage(failure=failure)
    assert _full(M.OUTPUT_COMMAND, output)["Command"]["Output"]["result"] == {
        "Failure": {"code": 409, "message": "no", "metadata": [{"key": "a", "value": "b"}]}
    }
    # A bad awakeable id does not decode: no JSON, as the official.
    assert describe(M.COMPLETE_AWAKEABLE_COMMAND, rejected.SerializeToString()).entry_json is None


def test_what_the_official_cannot_decode_has_no_json() -> None:
    not_utf8 = pb.SetStateCommandMessage(key=b"\xff", value=pb.Value(content=b"1"))
    assert describe(M.SET_STATE_COMMAND, not_utf8.SerializeToString()).entry_lite_json is None
    # An input without its value: the lite form decodes (it reads nothing), the full not.
    view = describe(M.INPUT_COMMAND, pb.InputCommandMessage(name="x").SerializeToString())
    assert (view.name, view.entry_json, view.entry_lite_json) == (
        None,
        None,
        '{"Command":{"Input":{}}}',
    )
    # A result the type cannot have (a lazy state read never fails).
    bad = pb.NotificationTemplate(completion_id=1, failure=pb.Failure(code=500))
    view = describe(M.GET_LAZY_STATE_COMPLETION, bad.SerializeToString())
    assert view.entry_json is None and view.entry_lite_json is not None
    garbage = describe(M.RUN_COMMAND, b"\xff\xff")
    assert garbage.entry_type == "Command: Run" and garbage.entry_json is None
    assert describe(0xFC01, b"").entry_type is None


def test_names_and_ascii() -> None:
    run = pb.RunCommandMessage(result_completion_id=1, name="größe")
    view = describe(M.RUN_COMMAND, run.SerializeToString())
    assert view.name == "größe"
    assert view.entry_json == '{"Command":{"Run":{"completion_id":1,"name":"größe"}}}'
    empty = describe(
        M.RUN_COMMAND, pb.RunCommandMessage(result_completion_id=1).SerializeToString()
    )
    assert empty.entry_lite_json == '{"Command":{"Run":{"completion_id":1}}}'
    signal = pb.NotificationTemplate(signal_id=5, void=pb.Void())
    assert _full(M.SIGNAL_NOTIFICATION, signal) == {
        "Notification": {"Signal": {"id": {"Index": 5}, "result": "Void"}}
    }


def test_every_entry_type_of_the_protocol_has_its_json() -> None:
    for t in M:
        kind = entry_kind(t)
        if kind is None:
            continue
        body = b"" if kind[0] == "Command" else pb.NotificationTemplate().SerializeToString()
        view = describe(t, body)
        assert view.entry_type == f"{kind[0]}: {kind[1]}"
