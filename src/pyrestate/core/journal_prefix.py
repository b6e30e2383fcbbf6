"""The prefix of a journal that restart-as-new copies into the new invocation.

Entries ``0..upto`` are copied, and after them the completions of copied commands that
arrived later in the journal (so that every copied command replays with its result).
A copied command whose completion is nowhere in the journal makes the prefix unusable:
the new invocation could never replay past it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyrestate.core.model import JournalEntry
from pyrestate.protocol import service_protocol_pb2 as pb
from pyrestate.protocol.frames import COMMAND_RANGE, MESSAGE_CLASSES

# The fields of a command that name the completions it waits for.
_COMPLETION_FIELDS = ("result_completion_id", "invocation_id_notification_idx")


def completion_ids(entry: JournalEntry) -> list[int]:
    """The completion ids a command entry waits for (none for other entries)."""
    if entry.type not in COMMAND_RANGE:
        return []
    cls = MESSAGE_CLASSES.get(entry.type)
    if cls is None:
        return []
    fields = cls.DESCRIPTOR.fields_by_name
    wanted = [name for name in _COMPLETION_FIELDS if name in fields]
    if not wanted:
        return []
    msg = cls.FromString(entry.body)
    return [getattr(msg, name) for name in wanted]


def notification_id(entry: JournalEntry) -> tuple[int, int | str] | None:
    """(0, completion id) or (1, signal index or name) of a notification entry."""
    if entry.type in COMMAND_RANGE:
        return None
    note = pb.NotificationTemplate.FromString(entry.body)
    which = note.WhichOneof("id")
    if which == "completion_id":
        return 0, note.completion_id
    if which == "signal_id":
        return 1, note.signal_id
    if which == "signal_name":
        return 1, note.signal_name
    return None


@dataclass(frozen=True, slots=True)
class Prefix:
    entries: list[JournalEntry]
    commands: int
    completions: set[int]
    signals: set[int | str]


def copy_prefix(journal: Sequence[JournalEntry], upto: int) -> Prefix | None:
    """Entries ``0..upto`` plus the later completions they need; None if one is missing."""
    if upto >= len(journal):
        return None
    entries: list[JournalEntry] = []
    commands = 0
    missing: set[int] = set()
    completions: set[int] = set()
    signals: set[int | str] = set()

    def take_notification(entry: JournalEntry) -> None:
        found = notification_id(entry)
        if found is None:
            return
        kind, value = found
        if kind == 0:
            assert isinstance(value, int)
            completions.add(value)
            missing.discard(value)
        else:
            signals.add(value)

    for entry in journal[: upto + 1]:
        entries.append(entry)
        if entry.type in COMMAND_RANGE:
            commands += 1
            missing.update(c for c in completion_ids(entry) if c not in completions)
        else:
            take_notification(entry)
    for entry in journal[upto + 1 :]:
        if not missing:
            break
        found = notification_id(entry)
        if found is not None and found[0] == 0 and found[1] in missing:
            entries.append(entry)
            take_notification(entry)
    if missing:
        return None
    return Prefix(entries, commands, completions, signals)
