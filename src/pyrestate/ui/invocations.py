"""Invocations: a filtered list paged by keyset, one invocation's page, and its actions.

A page of the list is found in two bounded steps. The first query reads only
``created_at`` of the newest rows (an ORDER BY created_at ... LIMIT that storage answers
from its index when the filters translate to it) to find the oldest time on the page; the
second reads the page's columns for that time window alone (a range storage filters), as
its tie-break on ``id`` is one storage cannot order by. The cursor is (created_at, id) of
the last row shown: the next page starts strictly after it, whatever is added meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyrestate.admin.in_process import ApiError
from pyrestate.admin.web import Request, Response
from pyrestate.ui import timeline
from pyrestate.ui.context import Ui
from pyrestate.ui.forms import query, same_origin
from pyrestate.ui.html import UiError, page, redirect
from pyrestate.ui.sql import STATUSES, BadValue, invocation_id, literal, status, timestamp

PAGE_SIZE = 50
JOURNAL_LIMIT = 1000  # entries shown; a longer journal says so


@dataclass(frozen=True, slots=True)
class Filters:
    service: str = ""
    handler: str = ""
    status: str = ""
    key: str = ""
    since: str = ""  # RFC 3339, UTC
    until: str = ""

    @classmethod
    def of(cls, params: dict[str, str]) -> Filters:
        """The filters of a query string, checked (BadValue names the bad one)."""
        since, until = params.get("since", "").strip(), params.get("until", "").strip()
        wanted = params.get("status", "").strip()
        return cls(
            service=params.get("service", "").strip(),
            handler=params.get("handler", "").strip(),
            status=status(wanted) if wanted else "",
            key=params.get("key", ""),
            since=timestamp(since) if since else "",
            until=timestamp(until) if until else "",
        )

    def conditions(self) -> list[str]:
        out = []
        for column, value in (
            ("target_service_name", self.service),
            ("target_handler_name", self.handler),
            ("status", self.status),
            ("target_service_key", self.key),
        ):
            if value:
                out.append(f"{column} = {literal(value)}")
        if self.since:
            out.append(f"created_at >= {literal(self.since)}")
        if self.until:
            out.append(f"created_at <= {literal(self.until)}")
        return out

    def params(self) -> dict[str, str]:
        return {
            "service": self.service,
            "handler": self.handler,
            "status": self.status,
            "key": self.key,
            "since": self.since,
            "until": self.until,
        }


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last row shown: (created_at, id)."""

    created_at: str
    id: str

    @classmethod
    def of(cls, params: dict[str, str]) -> Cursor | None:
        at, last = params.get("before", ""), params.get("before_id", "")
        if not at and not last:
            return None
        if not (at and last):
            raise BadValue("a page cursor needs both 'before' and 'before_id'")
        return cls(timestamp(at), invocation_id(last))


def _where(conditions: list[str]) -> str:
    return " WHERE " + " AND ".join(conditions) if conditions else ""


async def list_page_rows(
    ui: Ui, filters: Filters, cursor: Cursor | None, size: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """The rows of one page, newest first, and the cursor of the next page (None: last)."""
    base = filters.conditions()
    earlier = []
    if cursor is not None:
        earlier = [f"created_at < {literal(cursor.created_at)}"]
    times = await ui.api.query(
        f"SELECT created_at FROM sys_invocation{_where(base + earlier)} "
        f"ORDER BY created_at DESC LIMIT {size + 1}"
    )
    window = list(base)
    if len(times) > size:
        window.append(f"created_at >= {literal(timestamp(times[-1]['created_at']))}")
    if cursor is not None:
        at, last = literal(cursor.created_at), literal(cursor.id)
        window.append(f"created_at <= {at} AND (created_at < {at} OR id < {last})")
    rows = await ui.api.query(
        "SELECT id, target, status, completion_result, created_at, modified_at, retry_count "
        f"FROM sys_invocation{_where(window)} "
        f"ORDER BY created_at DESC, id DESC LIMIT {size + 1}"
    )
    if len(rows) <= size:
        return rows, None
    last_row = rows[size - 1]
    return rows[:size], Cursor(last_row["created_at"], last_row["id"])


async def list_page(ui: Ui, req: Request) -> Response:
    params = query(req)
    filters = Filters.of(params)
    cursor = Cursor.of(params)
    rows, following = await list_page_rows(ui, filters, cursor)
    services = await ui.services()
    return page(
        "invocations.html",
        nav="invocations",
        filters=filters,
        statuses=STATUSES,
        services=services,
        rows=rows,
        following=following,
        paged=cursor is not None,
        purged=params.get("purged", ""),
    )


# Actions on one invocation: the admin API's PATCH /invocations/{id}/{action}.
@dataclass(frozen=True, slots=True)
class Action:
    label: str
    explains: str
    done: str
    when: frozenset[str]  # statuses it applies to (the page offers it then)


ACTIONS = {
    "cancel": Action(
        "Cancel",
        "The handler gets a cancellation error at its next step, may run its compensations, "
        "and ends as cancelled. Calls it waits on are cancelled too.",
        "Cancellation requested: the invocation ends as soon as its handler takes it.",
        frozenset(STATUSES) - {"completed"},
    ),
    "kill": Action(
        "Kill",
        "The invocation ends at once, as failed; none of its code runs again, so no "
        "compensation runs. Prefer cancel unless cancel cannot end it.",
        "Killed.",
        frozenset(STATUSES) - {"completed"},
    ),
    "pause": Action(
        "Pause",
        "The invocation stops running and retrying, and holds its place until resumed.",
        "Pause requested.",
        frozenset({"running", "backing-off"}),
    ),
    "resume": Action(
        "Resume",
        "The invocation runs again now, from its journal.",
        "Resumed.",
        frozenset({"paused", "suspended", "backing-off"}),
    ),
    "purge": Action(
        "Purge",
        "The completed invocation's record, journal and result are deleted now, before its "
        "retention ends. This cannot be undone.",
        "Purged.",
        frozenset({"completed"}),
    ),
}


async def _invocation(ui: Ui, text: str) -> dict[str, Any]:
    inv = invocation_id(text)
    rows = await ui.api.query(f"SELECT * FROM sys_invocation WHERE id = {literal(inv)} LIMIT 1")
    if not rows:
        raise UiError(
            404,
            "No such invocation",
            f"there is no invocation '{inv}': it may have been purged, or its retention ended",
        )
    return rows[0]


async def invocation_page(ui: Ui, req: Request) -> Response:
    row = await _invocation(ui, req.params["invocation_id"])
    entries = await ui.api.query(
        "SELECT index, entry_type, name, entry_json FROM sys_journal "
        f"WHERE id = {literal(row['id'])} ORDER BY index LIMIT {JOURNAL_LIMIT + 1}"
    )
    done = ACTIONS.get(query(req).get("done", ""))
    return page(
        "invocation.html",
        nav="invocations",
        inv=row,
        steps=timeline.build(entries[:JOURNAL_LIMIT]),
        journal_cut=len(entries) > JOURNAL_LIMIT,
        actions={name: a for name, a in ACTIONS.items() if row["status"] in a.when},
        done=done.done if done else "",
    )


def _action(req: Request) -> tuple[str, Action]:
    name = req.params["action"]
    action = ACTIONS.get(name)
    if action is None:
        raise UiError(404, "No such action", f"'{name}' is not one of: {', '.join(ACTIONS)}")
    return name, action


async def confirm_page(ui: Ui, req: Request) -> Response:
    name, action = _action(req)
    row = await _invocation(ui, req.params["invocation_id"])
    return page("confirm_action.html", nav="invocations", inv=row, name=name, action=action)


async def act(ui: Ui, req: Request) -> Response:
    name, action = _action(req)
    same_origin(req)  # the form has no fields
    row = await _invocation(ui, req.params["invocation_id"])
    try:
        await ui.api.call("PATCH", f"/invocations/{row['id']}/{name}")
    except ApiError as e:
        return page(
            "confirm_action.html",
            e.status,
            nav="invocations",
            inv=row,
            name=name,
            action=action,
            refused=e.message,
        )
    if name == "purge":
        return redirect(f"/ui/invocations?purged={row['id']}")
    return redirect(f"/ui/invocations/{row['id']}?done={name}")
