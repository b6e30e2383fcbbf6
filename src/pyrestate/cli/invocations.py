"""`pyrestate invocations ...`: find invocations (SQL on sys_invocation) and control them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pyrestate.cli import render
from pyrestate.cli.admin_client import DEFAULT_ADMIN_URL, AdminClient, CliError
from pyrestate.cli.common import AdminUrl, JsonOutput, admin
from pyrestate.query.literal import sql_literal
from pyrestate.ui import timeline

invocations = typer.Typer(no_args_is_help=True, help="Invocations: list, inspect, control")

InvocationId = Annotated[str, typer.Argument(metavar="ID", help="inv_...")]

LIST_COLUMNS = ("id", "target", "status", "created_at", "modified_at", "retry_count")
DESCRIBE_COLUMNS = (
    "id",
    "target",
    "status",
    "created_at",
    "modified_at",
    "idempotency_key",
    "invoked_by_id",
    "invoked_by_target",
    "pinned_deployment_id",
    "retry_count",
    "next_retry_at",
    "last_failure",
    "completion_result",
    "completion_failure",
)
JOURNAL_COLUMNS = ("index", "entry_type", "name", "appended_at", "entry_json")
# The journal as `describe` prints it: a step per command, its answer folded in.
STEP_COLUMNS = ("index", "entry", "name", "appended_at", "details")
DETAIL_WIDTH = 60  # characters of a payload shown in the table


@invocations.command("list")
def list_invocations(
    status: Annotated[
        str | None, typer.Option(help="e.g. running, suspended, backing-off, paused, completed")
    ] = None,
    service: Annotated[str | None, typer.Option(help="Only this service's invocations")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first")] = 100,
    admin_url: AdminUrl = DEFAULT_ADMIN_URL,
    json: JsonOutput = False,
) -> None:
    """List invocations, newest first."""
    where = []
    if status:
        where.append(f"status = {sql_literal(status)}")
    if service:
        where.append(f"target_service_name = {sql_literal(service)}")
    sql = (
        f"SELECT {', '.join(LIST_COLUMNS)} FROM sys_invocation"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + f" ORDER BY created_at DESC, id LIMIT {limit}"
    )
    with admin(admin_url) as client:
        rows = client.query(sql)
    if json:
        render.print_json(rows)
        return
    out = render.console()
    out.print(render.table(rows, LIST_COLUMNS))
    out.print(f"{len(rows)} invocation(s)", highlight=False)


@invocations.command("describe")
def describe(
    invocation_id: InvocationId, admin_url: AdminUrl = DEFAULT_ADMIN_URL, json: JsonOutput = False
) -> None:
    """Show an invocation and its journal."""
    with admin(admin_url) as client:
        found = client.query(
            f"SELECT {', '.join(DESCRIBE_COLUMNS)} FROM sys_invocation "
            f"WHERE id = {sql_literal(invocation_id)}"
        )
        if not found:
            raise CliError(
                f"no invocation {invocation_id} (unknown, or completed and already purged)"
            )
        journal = _journal(client, invocation_id)
    if json:
        render.print_json({"invocation": found[0], "journal": journal})
        return
    out = render.console()
    out.print(render.details((_label(c), found[0].get(c)) for c in DESCRIBE_COLUMNS))
    out.print()
    out.print(f"Journal ({len(journal)} entries):", highlight=False)
    out.print(render.table(_steps(journal), STEP_COLUMNS, drop_empty=True))


def _steps(journal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the journal table: what each step sent and got, in a line (as the official
    CLI shows a call's target, a sleep's wake-up time, a state key)."""
    appended = {row["index"]: row.get("appended_at") for row in journal}
    rows = []
    for step in timeline.build(journal):
        details = []
        for d in (*step.sent, *step.result):
            value = d.invocation or (d.shown.text if d.shown is not None else d.text)
            value = " ".join(value.split())
            if len(value) > DETAIL_WIDTH:
                value = value[: DETAIL_WIDTH - 1] + "…"
            details.append(f"{d.label}: {value}")
        rows.append(
            {
                "index": step.index,
                "entry": f"{step.kind}: {step.type}",
                "name": step.name,
                "appended_at": appended.get(step.index),
                "details": "; ".join(details),
            }
        )
    return rows


def _label(column: str) -> str:
    return column.replace("_", " ").capitalize()


def _journal(client: AdminClient, invocation_id: str) -> list[dict[str, Any]]:
    return client.query(
        f"SELECT {', '.join(f'sj.{c}' for c in JOURNAL_COLUMNS)} FROM sys_journal sj "
        f"WHERE sj.id = {sql_literal(invocation_id)} ORDER BY sj.index"
    )


def _control(action: str, done: str, doc: str) -> None:
    def command(
        invocation_id: InvocationId,
        admin_url: AdminUrl = DEFAULT_ADMIN_URL,
        json: JsonOutput = False,
    ) -> None:
        with admin(admin_url) as client:
            resp = client.request("PATCH", f"/invocations/{invocation_id}/{action}")
        if json:
            render.print_json({"id": invocation_id, "action": action, "status": resp.status_code})
        else:
            # 202 (cancel, pause): the server applies it once the handler's attempt allows.
            note = " (accepted; applied asynchronously)" if resp.status_code == 202 else ""
            render.console().print(f"{done} {invocation_id}{note}", highlight=False)

    command.__doc__ = doc
    invocations.command(action)(command)


_control("cancel", "Cancelled", "Cancel an invocation: it runs its compensations and fails.")
_control("kill", "Killed", "Kill an invocation at once, without compensations.")
_control("purge", "Purged", "Forget a completed invocation: its result, journal and id.")
_control("pause", "Paused", "Pause an invocation; resume continues it.")
_control("resume", "Resumed", "Resume a paused invocation.")
