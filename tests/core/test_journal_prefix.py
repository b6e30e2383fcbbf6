"""The journal prefix restart-as-new copies: commands up to an index, with their results."""

from __future__ import annotations

from pyrestate.core import notifications as notif
from pyrestate.core.journal_prefix import completion_ids, copy_prefix
from pyrestate.core.model import JournalEntry, Output
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import MessageType

INPUT = notif.input_entry(b"in", ())
CALL = JournalEntry(
    MessageType.CALL_COMMAND,
    pb.CallCommandMessage(
        service_name="Greeter",
        handler_name="greet",
        invocation_id_notification_idx=1,
        result_completion_id=2,
    ).SerializeToString(),
)
CALLEE_ID = notif.invocation_id_completion(1, "inv_1")
RUN = JournalEntry(
    MessageType.RUN_COMMAND, pb.RunCommandMessage(result_completion_id=3).SerializeToString()
)
RUN_DONE = notif.completion(MessageType.RUN_COMPLETION, 3, Output(value=b"3"))
CALL_DONE = notif.completion(MessageType.CALL_COMPLETION, 2, Output(value=b"2"))
CANCEL = notif.signal(1, None)


def test_commands_name_the_completions_they_wait_for() -> None:
    assert completion_ids(CALL) == [2, 1]
    assert completion_ids(RUN) == [3]
    assert completion_ids(INPUT) == completion_ids(RUN_DONE) == []


def test_a_prefix_takes_the_later_results_of_its_commands() -> None:
    journal = [INPUT, CALL, CALLEE_ID, RUN, RUN_DONE, CALL_DONE]
    prefix = copy_prefix(journal, 1)
    assert prefix is not None
    # The call's two results come along, in their order; the run after it does not.
    assert prefix.entries == [INPUT, CALL, CALLEE_ID, CALL_DONE]
    assert (prefix.commands, prefix.completions) == (2, {1, 2})
    whole = copy_prefix(journal, 5)
    assert whole is not None and whole.entries == journal and whole.commands == 3


def test_a_command_whose_result_never_came_cannot_be_copied() -> None:
    journal = [INPUT, CALL, CALLEE_ID, RUN, RUN_DONE, CANCEL]
    assert copy_prefix(journal, 1) is None
    assert copy_prefix(journal, 0) is not None
    assert copy_prefix(journal, 6) is None  # past the end


def test_signals_in_the_prefix_are_remembered() -> None:
    journal = [INPUT, CANCEL, RUN, RUN_DONE]
    prefix = copy_prefix(journal, 1)
    assert prefix is not None and prefix.signals == {1} and prefix.entries == [INPUT, CANCEL]
