"""State of virtual objects and workflows: keys of a service, one key's entries, edits.

Edits go through the admin API's ``POST /services/{name}/state`` with the version of the
state the form showed: the server applies the new state when the key is free and drops
it if the state changed since (another edit, or a handler), as the official CLI's
``kv edit`` relies on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pyrestate.admin.web import Request, Response
from pyrestate.core.machine import state_version
from pyrestate.ui.context import SERVICE_TYPES, Ui
from pyrestate.ui.forms import form, query
from pyrestate.ui.html import UiError, page, redirect
from pyrestate.ui.sql import literal
from pyrestate.ui.values import Shown, bytes_of_hex, show_bytes

KEYS_PER_PAGE = 100
# State rows read to list keys (a key with many entries takes several).
KEY_ROWS = 1000
MAX_ENTRIES = 1000  # a key with more entries is shown but cannot be edited whole


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    raw: bytes
    shown: Shown

    @property
    def editable_text(self) -> str | None:
        """The value as text for the edit form, None if it is not UTF-8."""
        try:
            return self.raw.decode()
        except UnicodeDecodeError:
            return None


async def keys_of(ui: Ui, service: str, after: str) -> tuple[list[str], str | None]:
    """Up to KEYS_PER_PAGE keys after ``after``, and the cursor of the next page (None: last).

    Storage returns a service's entries in key order, so the first KEY_ROWS entries after
    the cursor hold the next keys (a key's other entries, if cut off, need not be read).
    """
    rows = await ui.api.query(
        f"SELECT service_key FROM state WHERE service_name = {literal(service)} "
        f"AND service_key > {literal(after)} LIMIT {KEY_ROWS}"
    )
    keys = sorted({r["service_key"] for r in rows})
    if len(keys) > KEYS_PER_PAGE:
        return keys[:KEYS_PER_PAGE], keys[KEYS_PER_PAGE - 1]
    return keys, keys[-1] if len(rows) == KEY_ROWS else None


async def entries_of(ui: Ui, service: str, key: str) -> tuple[list[Entry], bool]:
    """The entries of one key by name, and whether there were more than MAX_ENTRIES."""
    rows = await ui.api.query(
        f"SELECT key, value FROM state WHERE service_name = {literal(service)} "
        f"AND service_key = {literal(key)} LIMIT {MAX_ENTRIES + 1}"
    )
    entries = []
    for r in rows[:MAX_ENTRIES]:
        raw = bytes_of_hex(r.get("value"))
        entries.append(Entry(r["key"], raw, show_bytes(raw)))
    return sorted(entries, key=lambda e: e.name), len(rows) > MAX_ENTRIES


async def index(ui: Ui, req: Request) -> Response:
    keyed = [s for s in await ui.services() if s["ty"] != "Service"]
    return page("state_index.html", nav="state", services=keyed, types=SERVICE_TYPES)


async def service_keys(ui: Ui, req: Request) -> Response:
    svc = await ui.keyed_service(req.params["service"])
    params = query(req)
    wanted = params.get("key", "")
    if wanted:
        # The key box of the page: straight to that key.
        return redirect(
            f"/ui/state/{quote(svc['name'], safe='')}/{quote(wanted, safe='')}", status=302
        )
    after = params.get("after", "")
    keys, following = await keys_of(ui, svc["name"], after)
    return page(
        "state_keys.html",
        nav="state",
        svc=svc,
        types=SERVICE_TYPES,
        keys=keys,
        after=after,
        following=following,
    )


def _version(entries: list[Entry]) -> str:
    return state_version({e.name.encode(): e.raw for e in entries})


async def key_page(ui: Ui, req: Request) -> Response:
    svc = await ui.keyed_service(req.params["service"])
    key = req.params["key"]
    entries, cut = await entries_of(ui, svc["name"], key)
    return _render(svc, key, entries, cut, submitted=bool(query(req).get("submitted")))


def _render(
    svc: dict[str, Any],
    key: str,
    entries: list[Entry],
    cut: bool,
    *,
    status: int = 200,
    submitted: bool = False,
    problem: str = "",
) -> Response:
    return page(
        "state_key.html",
        status,
        nav="state",
        svc=svc,
        types=SERVICE_TYPES,
        key=key,
        entries=entries,
        cut=cut,
        version=_version(entries),
        submitted=submitted,
        problem=problem,
    )


def new_state(values: dict[str, str], entries: list[Entry]) -> dict[str, bytes]:
    """The state a submitted edit form asks for.

    Each shown entry has a ``value:<name>`` field and may be ticked ``remove:<name>``;
    ``new_name``/``new_value`` add one entry. ``clear`` empties the state, once the
    form's ``confirm`` box is ticked too (one click must not wipe an object's state).
    """
    if values.get("clear"):
        if not values.get("confirm"):
            raise UiError(
                400, "Not cleared", "tick the confirmation box to clear all state of this key"
            )
        return {}
    state: dict[str, bytes] = {}
    for e in entries:
        if values.get(f"remove:{e.name}"):
            continue
        text = values.get(f"value:{e.name}")
        state[e.name] = e.raw if text is None else text.encode()
    name = values.get("new_name", "")
    if name:
        if name in state:
            raise UiError(400, "Duplicate entry", f"the state already has an entry '{name}'")
        state[name] = values.get("new_value", "").encode()
    return state


async def edit(ui: Ui, req: Request) -> Response:
    svc = await ui.keyed_service(req.params["service"])
    key = req.params["key"]
    values = form(req)
    entries, cut = await entries_of(ui, svc["name"], key)
    if cut:
        raise UiError(409, "Too large to edit", f"this key has more than {MAX_ENTRIES} entries")
    version = values.get("version", "")
    if version != _version(entries):
        return _render(
            svc,
            key,
            entries,
            cut,
            status=409,
            problem="The state changed since the form was loaded; here it is as it is now. "
            "Make the change again.",
        )
    state = new_state(values, entries)
    await ui.api.call(
        "POST",
        f"/services/{quote(svc['name'], safe='')}/state",
        {
            "object_key": key,
            "version": version,
            "new_state": {name: list(raw) for name, raw in state.items()},
        },
    )
    return redirect(f"/ui/state/{quote(svc['name'], safe='')}/{quote(key, safe='')}?submitted=1")
