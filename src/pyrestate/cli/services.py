"""`pyrestate services ...`: registered services and their configuration."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pyrestate.cli import render
from pyrestate.cli.admin_client import DEFAULT_ADMIN_URL
from pyrestate.cli.common import AdminUrl, JsonOutput, admin, fail

services = typer.Typer(no_args_is_help=True, help="Registered services")
config = typer.Typer(no_args_is_help=True, help="A service's configuration")
services.add_typer(config, name="config")

# The settings `config view` shows and `config edit` changes (PATCH /services/{name}).
CONFIG_FIELDS = (
    "public",
    "idempotency_retention",
    "journal_retention",
    "workflow_completion_retention",
    "inactivity_timeout",
    "abort_timeout",
)

Duration = Annotated[str | None, typer.Option(help="A duration such as 1h, 30m or 1d 12h")]


def _path(name: str) -> str:
    return f"/services/{name}"


@services.command("list")
def list_services(admin_url: AdminUrl = DEFAULT_ADMIN_URL, json: JsonOutput = False) -> None:
    """List the registered services."""
    with admin(admin_url) as client:
        found = sorted(client.call("GET", "/services")["services"], key=lambda s: s["name"])
    if json:
        render.print_json(found)
        return
    rows = [
        {
            "name": s["name"],
            "type": s.get("ty"),
            "revision": s.get("revision"),
            "public": s.get("public"),
            "deployment": s.get("deployment_id"),
        }
        for s in found
    ]
    render.console().print(render.table(rows, ["name", "type", "revision", "public", "deployment"]))


@services.command("describe")
def describe(name: str, admin_url: AdminUrl = DEFAULT_ADMIN_URL, json: JsonOutput = False) -> None:
    """Show a service: its type, deployment, settings and handlers."""
    with admin(admin_url) as client:
        service = client.call("GET", _path(name))
    if json:
        render.print_json(service)
        return
    out = render.console()
    out.print(
        render.details(
            [
                ("Name", service["name"]),
                ("Type", service.get("ty")),
                ("Revision", service.get("revision")),
                ("Deployment", service.get("deployment_id")),
                *((_label(f), service.get(f)) for f in CONFIG_FIELDS),
            ]
        )
    )
    out.print()
    handlers = [
        {
            "handler": h["name"],
            "type": h.get("ty"),
            "public": h.get("public"),
            "input": h.get("input_description"),
            "output": h.get("output_description"),
        }
        for h in service.get("handlers", [])
    ]
    out.print(render.table(handlers, ["handler", "type", "public", "input", "output"]))


@config.command("view")
def view(name: str, admin_url: AdminUrl = DEFAULT_ADMIN_URL, json: JsonOutput = False) -> None:
    """Show a service's configuration."""
    with admin(admin_url) as client:
        service = client.call("GET", _path(name))
    _show_config(service, json)


@config.command("edit")
def edit(
    name: str,
    public: Annotated[
        bool | None, typer.Option("--public/--private", help="Callable through the ingress?")
    ] = None,
    idempotency_retention: Duration = None,
    journal_retention: Duration = None,
    workflow_completion_retention: Duration = None,
    inactivity_timeout: Duration = None,
    abort_timeout: Duration = None,
    admin_url: AdminUrl = DEFAULT_ADMIN_URL,
    json: JsonOutput = False,
) -> None:
    """Change a service's configuration; settings not given stay as they are."""
    changes: dict[str, Any] = {
        "public": public,
        "idempotency_retention": idempotency_retention,
        "journal_retention": journal_retention,
        "workflow_completion_retention": workflow_completion_retention,
        "inactivity_timeout": inactivity_timeout,
        "abort_timeout": abort_timeout,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        fail("nothing to change; give at least one option (see --help)", code=2)
    with admin(admin_url) as client:
        service = client.call("PATCH", _path(name), json=changes)
    _show_config(service, json)


def _show_config(service: dict[str, Any], as_json: bool) -> None:
    settings = {f: service.get(f) for f in CONFIG_FIELDS}
    if as_json:
        render.print_json(settings)
    else:
        render.console().print(render.details((_label(f), v) for f, v in settings.items()))


def _label(field: str) -> str:
    return field.replace("_", " ").capitalize()
