"""`pyrestate kv get SERVICE KEY`: the K/V state of one virtual object or workflow key."""

from __future__ import annotations

import typer

from pyrestate.cli import render
from pyrestate.cli.admin_client import DEFAULT_ADMIN_URL
from pyrestate.cli.common import AdminUrl, JsonOutput, admin
from pyrestate.query.literal import sql_literal

kv = typer.Typer(no_args_is_help=True, help="K/V state of virtual objects and workflows")


@kv.command("get")
def get(
    service: str, key: str, admin_url: AdminUrl = DEFAULT_ADMIN_URL, json: JsonOutput = False
) -> None:
    """Show every state entry of SERVICE/KEY (values as UTF-8 text, e.g. JSON)."""
    sql = (
        "SELECT key, value_utf8, value_length FROM state "
        f"WHERE service_name = {sql_literal(service)} AND service_key = {sql_literal(key)} "
        "ORDER BY key"
    )
    with admin(admin_url) as client:
        rows = client.query(sql)
    if json:
        render.print_json({r["key"]: r.get("value_utf8") for r in rows})
        return
    out = render.console()
    if not rows:
        out.print(f"No state for {service}/{key}", highlight=False)
        return
    out.print(
        render.table(
            [
                {"key": r["key"], "value": r.get("value_utf8"), "bytes": r.get("value_length")}
                for r in rows
            ],
            ["key", "value", "bytes"],
        )
    )
