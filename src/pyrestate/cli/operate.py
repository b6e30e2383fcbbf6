"""The operator commands, gathered for `pyrestate` (which adds this app without a name,
so its groups and commands appear at the top level: `pyrestate services list`, ...)."""

from __future__ import annotations

from typing import Annotated

import typer

from pyrestate.cli import render
from pyrestate.cli.admin_client import DEFAULT_ADMIN_URL
from pyrestate.cli.common import AdminUrl, JsonOutput, admin
from pyrestate.cli.deployments import deployments
from pyrestate.cli.invocations import invocations
from pyrestate.cli.kv import kv
from pyrestate.cli.services import services

operate = typer.Typer()
operate.add_typer(services, name="services")
operate.add_typer(deployments, name="deployments")
operate.add_typer(invocations, name="invocations")
operate.add_typer(kv, name="kv")


@operate.command()
def sql(
    query: Annotated[str, typer.Argument(help='e.g. "SELECT id, status FROM sys_invocation"')],
    admin_url: AdminUrl = DEFAULT_ADMIN_URL,
    json: JsonOutput = False,
) -> None:
    """Run a SQL query on the server's tables (sys_invocation, sys_journal, state, ...)."""
    with admin(admin_url) as client:
        rows = client.query(query)
    if json:
        render.print_json(rows)
        return
    out = render.console()
    out.print(render.table(rows))
    out.print(f"{len(rows)} row(s)", highlight=False)


@operate.command()
def status(admin_url: AdminUrl = DEFAULT_ADMIN_URL, json: JsonOutput = False) -> None:
    """Check that the admin API answers, and show the server's version."""
    with admin(admin_url) as client:
        client.request("GET", "/health")
        version = client.call("GET", "/version")
    if json:
        render.print_json({"admin_url": client.base_url, "healthy": True, **version})
        return
    render.console().print(
        render.details(
            [
                ("Admin API", f"{client.base_url} is healthy"),
                ("Server version", version.get("version")),
                (
                    "Admin API versions",
                    f"{version.get('min_admin_api_version')}..{version.get('max_admin_api_version')}",
                ),
                ("Ingress", version.get("ingress_endpoint")),
            ]
        )
    )
