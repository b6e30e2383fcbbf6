"""Workflows: recent runs of a workflow service, and one key's run, promises and state."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pyrestate.admin.web import Request, Response
from pyrestate.ui.context import Ui
from pyrestate.ui.forms import query
from pyrestate.ui.html import UiError, page, redirect
from pyrestate.ui.invocations import Filters, list_page_rows
from pyrestate.ui.sql import literal
from pyrestate.ui.state import entries_of
from pyrestate.ui.values import bytes_of_hex, show_bytes

RECENT_RUNS = 20
MAX_PROMISES = 1000
MAX_RUNS = 10  # a key runs again only after its retention: a few runs at most


async def _workflow(ui: Ui, name: str) -> tuple[dict[str, Any], str]:
    """The workflow service and the name of its main (run) handler."""
    svc = await ui.service(name)
    if svc["ty"] != "Workflow":
        raise UiError(400, "Not a workflow", f"'{name}' is not a workflow")
    main = next((h["name"] for h in svc["handlers"] if h.get("ty") == "Workflow"), "run")
    return svc, main


async def index(ui: Ui, req: Request) -> Response:
    workflows = [s for s in await ui.services() if s["ty"] == "Workflow"]
    return page("workflows.html", nav="workflows", workflows=workflows)


async def runs(ui: Ui, req: Request) -> Response:
    svc, main = await _workflow(ui, req.params["service"])
    wanted = query(req).get("key", "")
    if wanted:
        return redirect(
            f"/ui/workflows/{quote(svc['name'], safe='')}/{quote(wanted, safe='')}", status=302
        )
    rows, following = await list_page_rows(
        ui, Filters(service=svc["name"], handler=main), None, RECENT_RUNS
    )
    return page(
        "workflow_runs.html", nav="workflows", svc=svc, main=main, rows=rows, more=bool(following)
    )


async def key_page(ui: Ui, req: Request) -> Response:
    svc, main = await _workflow(ui, req.params["service"])
    key = req.params["key"]
    where = (
        f"target_service_name = {literal(svc['name'])} AND target_service_key = {literal(key)} "
        f"AND target_handler_name = {literal(main)}"
    )
    run_rows = await ui.api.query(
        "SELECT id, status, completion_result, completion_failure, created_at, completed_at "
        f"FROM sys_invocation WHERE {where} LIMIT {MAX_RUNS}"
    )
    promise_rows = await ui.api.query(
        "SELECT key, completed, completion_success_value, completion_failure FROM sys_promise "
        f"WHERE service_name = {literal(svc['name'])} AND service_key = {literal(key)} "
        f"LIMIT {MAX_PROMISES}"
    )
    promises = [
        {
            "name": p["key"],
            "completed": p.get("completed", False),
            "failure": p.get("completion_failure"),
            "value": show_bytes(bytes_of_hex(p.get("completion_success_value"))),
        }
        for p in sorted(promise_rows, key=lambda p: p["key"])
    ]
    entries, cut = await entries_of(ui, svc["name"], key)
    return page(
        "workflow_key.html",
        nav="workflows",
        svc=svc,
        main=main,
        key=key,
        runs=sorted(run_rows, key=lambda r: r["created_at"], reverse=True),
        promises=promises,
        entries=entries,
        state_cut=cut,
    )
