"""A partition store with a few invocations of every kind, written through storage
(shared by the tests here; conftest.py makes fixtures of it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyrestate.core.changes import Changes, StateOp
from pyrestate.core.ids import InvocationId, new_invocation_id
from pyrestate.core.model import (
    Failure,
    HandlerType,
    InvocationStatus,
    JournalEntry,
    Output,
    Promise,
    ServiceType,
    Status,
    Target,
)
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType
from pyrestate.storage.sqlite import SqlitePartitionStore

T0 = 1_795_327_823_812  # 2026-11-22T06:10:23.812Z
DAY_MS = 86_400_000


@dataclass
class Filled:
    path: Path
    ids: dict[str, InvocationId]


def _inv(n: int, service: str, key: str | None) -> InvocationId:
    return new_invocation_id(
        bytes([n]) * 24, service=service, handler="h", key=key, idempotency_key=None
    )


def fill(store: SqlitePartitionStore, extra_completed: int = 0) -> dict[str, InvocationId]:
    greeter = Target("Greeter", "greet", None, ServiceType.SERVICE, None)
    counter = Target("Counter", "add", "k1", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE)
    ids = {
        "completed": _inv(1, "Greeter", None),
        "failed": _inv(2, "Greeter", None),
        "running": _inv(3, "Counter", "k1"),
        "inboxed": _inv(4, "Counter", "k1"),
        "suspended": _inv(5, "Greeter", None),
        "backing_off": _inv(6, "Greeter", None),
        "scheduled": _inv(7, "Greeter", None),
    }
    common = {"created_at": T0, "modified_at": T0 + 5, "completion_retention": DAY_MS,
              "journal_retention": DAY_MS}  # fmt: skip
    statuses = [
        InvocationStatus(
            ids["completed"], greeter, Status.COMPLETED, running_at=T0, completed_at=T0 + 5,
            deployment_id="dp_11Q30N86eKctR8CklaU5QZj", journal_length=2, command_count=2,
            output=Output(value=b'"hi"'), **common,
        ),
        InvocationStatus(
            ids["failed"], greeter, Status.COMPLETED, completed_at=T0 + 5,
            output=Output(failure=Failure(409, "nope")), **common,
        ),
        InvocationStatus(ids["running"], counter, Status.INVOKED, running_at=T0, **common),
        InvocationStatus(ids["inboxed"], counter, Status.INBOXED, inbox_seq=3, **common),
        InvocationStatus(
            ids["suspended"], greeter, Status.SUSPENDED, waiting_completions=frozenset({1, 2}),
            waiting_signals=frozenset({17}), **common,
        ),
        InvocationStatus(
            ids["backing_off"], greeter, Status.BACKING_OFF, retry_count=3,
            next_retry_at=T0 + 1000, last_failure=Failure(500, "boom"),
            last_failure_related='{"index": 2, "name": "charge", "type": 1041}', **common,
        ),
        InvocationStatus(
            ids["scheduled"], greeter, Status.SCHEDULED, execution_time=T0 + 60_000, **common
        ),
    ]  # fmt: skip
    for i in range(extra_completed):
        inv = new_invocation_id(
            i.to_bytes(24, "big"), service="Greeter", handler="greet", key=None,
            idempotency_key=None,
        )  # fmt: skip
        statuses.append(
            InvocationStatus(inv, greeter, Status.COMPLETED, output=Output(value=b"1"), **common)
        )
    changes = Changes(statuses={st.id: st for st in statuses})
    entry = pb.InputCommandMessage()
    entry.value.content = b'"x"'
    out = pb.OutputCommandMessage()
    out.value.content = b'"hi"'
    first = JournalEntry(MessageType.INPUT_COMMAND, entry.SerializeToString())
    last = JournalEntry(MessageType.OUTPUT_COMMAND, out.SerializeToString())
    changes.journal += [
        (ids["completed"], 0, first, T0, None),
        (ids["completed"], 1, last, T0 + 5, None),
    ]
    changes.state.append(StateOp("Counter", "k1", b"count", b"10"))
    changes.state.append(StateOp("Counter", "k2", b"raw", b"\xff\x00"))
    changes.promises[("Wf", "w1", "p")] = Promise(Output(value=b'"done"'))
    store.commit(changes)
    return ids
