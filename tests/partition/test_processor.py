"""The partition writer: batches commit whole or not at all, effects wait for the commit."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from partition_helpers import GREET, Clock, Effects, settle, store_fixture  # noqa: F401

from pyrestate.core import machine as machine_module
from pyrestate.core.changes import Changes
from pyrestate.core.commands import (
    AppendCommand,
    Attach,
    AttemptEnded,
    Invoke,
    ProposeRunCompletion,
    Retention,
)
from pyrestate.core.effects import AbortAttempt, Ack, StartAttempt
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import HandlerType, JournalEntry, Output, ServiceType, Status, Target
from pyrestate.core.notifications import completion
from pyrestate.partition import processor as processor_module
from pyrestate.partition.processor import (
    TIMER_WINDOW_MS,
    CommandRejected,
    PartitionProcessor,
    PartitionUnavailable,
)
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType
from pyrestate.storage.sqlite import SqlitePartitionStore


def _object(key: str) -> Target:
    return Target("Counter", "add", key, ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE)


async def _started(store: SqlitePartitionStore, clock: Clock | None = None) -> tuple:  # type: ignore[type-arg]
    p = PartitionProcessor(store, clock or Clock())
    fx = Effects()
    p.invoker = fx
    await p.start()
    return p, fx


async def _invoke(p: PartitionProcessor, inv: InvocationId, target: Target) -> None:
    await p.request(lambda t: Invoke(inv, target, b"", reply=t))


def _set_state(inv: InvocationId, key: bytes) -> AppendCommand:
    msg = pb.SetStateCommandMessage(key=key)
    msg.value.content = b"v"
    entry = JournalEntry(MessageType.SET_STATE_COMMAND, msg.SerializeToString())
    return AppendCommand(inv, 1, "dp", entry, msg)


def _clear_all(inv: InvocationId) -> AppendCommand:
    msg = pb.ClearAllStateCommandMessage()
    entry = JournalEntry(MessageType.CLEAR_ALL_STATE_COMMAND, msg.SerializeToString())
    return AppendCommand(inv, 1, "dp", entry, msg)


async def test_a_failing_command_leaves_no_trace_and_the_rest_of_its_batch_commits(
    store: SqlitePartitionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, fx = await _started(store)
    good, bad = InvocationId(1, bytes(16)), InvocationId(2, bytes(15) + b"\x01")
    await _invoke(p, good, _object("a"))
    await _invoke(p, bad, _object("b"))

    def half_then_fail(m: machine_module.PartitionMachine, st: object, cmd: object) -> None:
        m._write_state(st.target, b"half", b"written")  # type: ignore[attr-defined]
        raise RuntimeError("injected")

    monkeypatch.setitem(
        machine_module._COMMAND_HANDLERS, MessageType.CLEAR_ALL_STATE_COMMAND, half_then_fail
    )
    # One batch: both submitted before the writer runs.
    p.submit(_set_state(good, b"x"))
    p.submit(_clear_all(bad))
    await settle(p)

    assert store.state("Counter", "a") == {b"x": b"v"}
    assert store.state("Counter", "b") == {}, "nothing of the failed command was committed"
    bad_st = store.invocation(bad)
    assert bad_st is not None and bad_st.journal_length == 1 and bad_st.command_count == 1
    assert p.machine.invocations[bad].journal_length == 1, "memory is what storage has"
    (abort,) = [e for e in fx.seen if isinstance(e, AbortAttempt)]
    assert abort.invocation_id == bad and "injected" in abort.failure.message
    # The partition keeps serving.
    await _invoke(p, InvocationId(3, bytes(16)), GREET)
    await p.stop()


async def test_a_request_whose_command_fails_is_answered_not_left_waiting(
    store: SqlitePartitionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, _ = await _started(store)

    def broken(self: object, cmd: object) -> None:
        raise RuntimeError("injected")

    monkeypatch.setattr(machine_module.PartitionMachine, "_on_attach", broken)
    with pytest.raises(CommandRejected, match="injected"):
        await asyncio.wait_for(
            p.request(lambda t: Attach(InvocationId(1, bytes(16)), t)), timeout=5
        )
    await p.stop()


async def test_a_timer_whose_command_fails_is_kept_and_tried_again(
    store: SqlitePartitionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processor_module, "TIMER_RETRY_S", 0.05)
    clock = Clock()
    p, fx = await _started(store, clock)
    inv = InvocationId(1, bytes(16))
    await p.request(lambda t: Invoke(inv, GREET, b"", execution_time=clock.now + 10, reply=t))
    original = machine_module.PartitionMachine._on_timer
    calls = []

    def flaky(self: machine_module.PartitionMachine, key: object) -> None:
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("injected")
        original(self, key)  # type: ignore[arg-type]

    monkeypatch.setattr(machine_module.PartitionMachine, "_on_timer", flaky)
    clock.now += 10
    p._arm_timer()
    for _ in range(100):
        await asyncio.sleep(0.01)
        if any(isinstance(e, StartAttempt) and e.invocation_id == inv for e in fx.seen):
            break
    assert len(calls) == 2
    st = store.invocation(inv)
    assert st is not None and st.status is Status.INVOKED
    assert store.timers() == []
    await p.stop()


class BlockingStore(SqlitePartitionStore):
    """A store whose commit waits until the test lets it finish."""

    release: threading.Event

    def commit(self, changes: Changes) -> None:
        self.release.wait(10)
        super().commit(changes)


async def test_no_reply_or_attempt_leaves_before_its_commit_returns(tmp_path: Path) -> None:
    store = BlockingStore(tmp_path / "p.db")
    store.release = threading.Event()
    store.release.set()
    p, fx = await _started(store)
    store.release.clear()
    inv = InvocationId(1, bytes(16))
    answer = asyncio.ensure_future(_invoke(p, inv, GREET))
    await asyncio.sleep(0.2)
    assert not answer.done() and fx.seen == []
    assert store.invocation(inv) is None
    store.release.set()
    await asyncio.wait_for(answer, 5)
    assert [type(e) for e in fx.seen] == [StartAttempt]
    # An ack and a timer wait for their commit too.
    store.release.clear()
    ack = _set_state(inv, b"k")
    p.submit(AppendCommand(inv, 1, "dp", ack.entry, ack.message, requires_ack=True))
    later = InvocationId(2, bytes(16))
    delayed = asyncio.ensure_future(
        p.request(lambda t: Invoke(later, GREET, b"", execution_time=p._clock() + 50, reply=t))
    )
    await asyncio.sleep(0.2)
    assert [type(e) for e in fx.seen] == [StartAttempt] and p._timers == []
    store.release.set()
    await asyncio.wait_for(delayed, 5)
    assert [type(e) for e in fx.seen] == [StartAttempt, Ack]
    assert [k.invocation_id for k in p._timers] == [later.to_bytes()]
    await p.stop()
    store.close()


async def test_far_timers_stay_in_storage_until_their_window(
    store: SqlitePartitionStore,
) -> None:
    clock = Clock()
    p, _ = await _started(store, clock)
    far, near = InvocationId(1, bytes(16)), InvocationId(2, bytes(16))
    far_at = clock.now + 10 * TIMER_WINDOW_MS
    await p.request(lambda t: Invoke(far, GREET, b"", execution_time=far_at, reply=t))
    await p.request(lambda t: Invoke(near, GREET, b"", execution_time=clock.now + 5, reply=t))
    assert [k.invocation_id for k in p._timers] == [near.to_bytes()]
    assert far not in p.machine.invocations and near not in p.machine.invocations
    clock.now = far_at - TIMER_WINDOW_MS // 4
    await p._housekeeping()
    assert far.to_bytes() in [k.invocation_id for k in p._timers]
    await p.stop()


async def test_a_failed_commit_stops_the_writer_and_answers_every_waiter(
    store: SqlitePartitionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    p, _ = await _started(store)

    def disk_full(changes: Changes) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store, "commit", disk_full)
    with pytest.raises(PartitionUnavailable):
        await asyncio.wait_for(_invoke(p, InvocationId(1, bytes(16)), GREET), 5)
    assert p.writer.done() and isinstance(p.writer.exception(), OSError)
    with pytest.raises(PartitionUnavailable):
        p.submit(Attach(InvocationId(1, bytes(16)), 0))
    await p.stop()


async def test_notifications_seen_over_many_steps_survive_a_restart(
    store: SqlitePartitionStore,
) -> None:
    p, _ = await _started(store)
    inv = InvocationId(1, bytes(16))
    await _invoke(p, inv, GREET)
    for cid in range(1, 2001):
        entry = completion(MessageType.RUN_COMPLETION, cid, Output(value=b"v"))
        p.submit(ProposeRunCompletion(inv, 1, "dp", cid, entry))
    await settle(p)
    await p.stop()
    again, _ = await _started(store)
    st = again.machine.invocations[inv]
    assert st.completions_seen == set(range(1, 2001)) and st.journal_length == 2001
    await again.stop()


async def test_completed_invocations_are_swept_after_their_retention(
    store: SqlitePartitionStore,
) -> None:
    clock = Clock()
    p, _ = await _started(store, clock)
    inv = InvocationId(1, bytes(16))
    await p.request(lambda t: Invoke(inv, GREET, b"", reply=t, retention=Retention(1000, 500)))
    out = pb.OutputCommandMessage()
    out.value.content = b"done"
    p.submit(AppendCommand(inv, 1, "dp", JournalEntry(MessageType.OUTPUT_COMMAND, b""), out))
    p.submit(AttemptEnded(inv, 1, "dp"))
    await settle(p)
    assert store.invocation(inv) is not None
    clock.now += 999
    await p._housekeeping()
    await settle(p)
    assert store.invocation(inv) is not None, "kept for its retention"
    clock.now += 1 + processor_module.SWEEP_INTERVAL_MS
    await p._housekeeping()
    await settle(p)
    assert store.invocation(inv) is None and store.journal(inv, 10) == []
    await p.stop()


async def test_records_delivered_again_are_dropped_also_after_a_restart(
    store: SqlitePartitionStore,
) -> None:
    p, _ = await _started(store)

    def record(n: int, offset: int) -> asyncio.Future:  # type: ignore[type-arg]
        inv = InvocationId(n, bytes(15) + bytes([n]))
        return p.request_soon(
            lambda t: Invoke(
                inv, _object("k"), b"", reply=t, subscription_id="sub", dedup=("sub/g/t/0", offset)
            ),
            follow=False,
        )

    answers = await asyncio.gather(record(1, 0), record(2, 1), record(3, 1), record(4, 0))
    assert [a.invocation_id is not None for a in answers] == [True, True, False, False]
    assert p.accepted_seq("sub/g/t/0") == 1 and p.accepted_seq("sub/g/t/1") is None
    assert p.live_from("sub") == 2, "two invocations, neither completed"
    await p.stop()

    p, _ = await _started(store)
    assert p.accepted_seq("sub/g/t/0") == 1, "the accepted offset is durable"
    assert p.live_from("sub") == 2, "counted again from storage"
    again, fresh = await asyncio.gather(record(5, 1), record(6, 2))
    assert again.invocation_id is None and fresh.invocation_id is not None
    ids = {i.to_bytes() for i in (InvocationId(n, bytes(15) + bytes([n])) for n in (1, 2, 6))}
    stored = store.invocations(InvocationId(n, bytes(15) + bytes([n])) for n in range(1, 7))
    assert {i.to_bytes() for i in stored} == ids, "one invocation per offset, none twice"
    assert {st.subscription_id for st in stored.values()} == {"sub"}
    await p.stop()
