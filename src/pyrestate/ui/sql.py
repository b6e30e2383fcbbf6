"""SQL text for the pages' queries: quoted literals and checked values only.

Every value from a request reaches SQL through `literal` (quotes doubled) or after a
strict check (invocation ids, statuses, timestamps), never pasted as it came.
"""

from __future__ import annotations

import datetime as dt

from pyrestate.core.ids import IdError, InvocationId
from pyrestate.query.literal import sql_literal


class BadValue(ValueError):
    """A request value that cannot be used (its message says why, for the error page)."""


# The statuses sys_invocation shows, in the order of an invocation's life.
STATUSES = (
    "pending",
    "scheduled",
    "running",
    "backing-off",
    "suspended",
    "paused",
    "completed",
)


def literal(value: str) -> str:
    """A SQL string literal holding ``value``."""
    if "\x00" in value:
        raise BadValue("a value may not contain a NUL character")
    return sql_literal(value)


def invocation_id(text: str) -> str:
    """``text`` if it is a well-formed invocation id, else BadValue."""
    try:
        return str(InvocationId.parse(text.strip()))
    except IdError as e:
        raise BadValue(f"'{text}' is not an invocation id ({e})") from None


def status(text: str) -> str:
    if text not in STATUSES:
        raise BadValue(f"unknown status '{text}'; one of: {', '.join(STATUSES)}")
    return text


def timestamp(text: str) -> str:
    """A time from a form (``YYYY-MM-DDTHH:MM[:SS[.fff]]``, UTC unless it says otherwise) as
    the RFC 3339 text that sys_invocation's timestamps compare with."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        moment = moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        raise BadValue(f"'{text}' is not a time (YYYY-MM-DDTHH:MM, UTC)") from None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
