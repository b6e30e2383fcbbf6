"""`pyrestate deployments ...`: the endpoints that serve services."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pyrestate.cli import render
from pyrestate.cli.admin_client import DEFAULT_ADMIN_URL
from pyrestate.cli.common import AdminUrl, JsonOutput, admin, fail

deployments = typer.Typer(no_args_is_help=True, help="Service deployments")


@deployments.command("list")
def list_deployments(admin_url: AdminUrl = DEFAULT_ADMIN_URL, json: JsonOutput = False) -> None:
    """List the registered deployments."""
    with admin(admin_url) as client:
        found = client.call("GET", "/deployments")["deployments"]
    if json:
        render.print_json(found)
        return
    rows = [
        {
            "id": d["id"],
            "endpoint": _endpoint(d),
            "type": _kind(d),
            "created_at": d.get("created_at"),
            "services": _services(d),
        }
        for d in found
    ]
    render.console().print(render.table(rows, ["id", "endpoint", "type", "created_at", "services"]))


@deployments.command("describe")
def describe(
    deployment_id: Annotated[str, typer.Argument(metavar="ID")],
    admin_url: AdminUrl = DEFAULT_ADMIN_URL,
    json: JsonOutput = False,
) -> None:
    """Show a deployment and the services it serves."""
    with admin(admin_url) as client:
        found = client.call("GET", f"/deployments/{deployment_id}")
    if json:
        render.print_json(found)
    else:
        _show(found)


@deployments.command("register")
def register(
    uri: str,
    force: Annotated[bool, typer.Option(help="Replace an existing deployment at this URI")] = False,
    use_http_11: Annotated[
        bool, typer.Option("--use-http1.1", help="Talk HTTP/1.1 (request/response) to it")
    ] = False,
    admin_url: AdminUrl = DEFAULT_ADMIN_URL,
    json: JsonOutput = False,
) -> None:
    """Register a deployment: discover its services and make them callable."""
    body = {"uri": uri, "force": force, "use_http_11": use_http_11}
    with admin(admin_url) as client:
        new_id = client.call("POST", "/deployments", json=body)["id"]
        # The registration's answer lacks the endpoint and times; the deployment has them.
        registered = client.call("GET", f"/deployments/{new_id}")
    if json:
        render.print_json(registered)
        return
    render.console().print(f"Registered deployment {new_id}", highlight=False)
    _show(registered)


@deployments.command("remove")
def remove(
    deployment_id: Annotated[str, typer.Argument(metavar="ID")],
    force: Annotated[
        bool, typer.Option(help="Required: invocations pinned to it can no longer progress")
    ] = False,
    admin_url: AdminUrl = DEFAULT_ADMIN_URL,
    json: JsonOutput = False,
) -> None:
    """Remove a deployment (only forced removal exists, as in the official server)."""
    if not force:
        fail(
            "removing a deployment strands invocations that still run on it; "
            "pass --force to remove it anyway",
            code=2,
        )
    with admin(admin_url) as client:
        resp = client.request("DELETE", f"/deployments/{deployment_id}", params={"force": "true"})
    if json:
        render.print_json({"id": deployment_id, "removed": True, "status": resp.status_code})
    else:
        render.console().print(f"Removed deployment {deployment_id}", highlight=False)


def _show(d: dict[str, Any]) -> None:
    out = render.console()
    out.print(
        render.details(
            [
                ("Id", d["id"]),
                ("Endpoint", _endpoint(d)),
                ("Type", _kind(d)),
                ("HTTP version", d.get("http_version")),
                ("Protocol", f"{d.get('min_protocol_version')}..{d.get('max_protocol_version')}"),
                ("SDK", d.get("sdk_version")),
                ("Created at", d.get("created_at")),
            ]
        )
    )
    out.print()
    rows = [
        {"service": s["name"], "revision": s.get("revision"), "type": s.get("ty")}
        for s in d.get("services", [])
    ]
    out.print(render.table(rows, ["service", "revision", "type"]))


def _endpoint(d: dict[str, Any]) -> str:
    return d.get("uri") or d.get("arn") or ""


def _kind(d: dict[str, Any]) -> str:
    return "Lambda" if "arn" in d else "HTTP"


def _services(d: dict[str, Any]) -> str:
    return ", ".join(f"{s['name']} [{s.get('revision')}]" for s in d.get("services", []))
