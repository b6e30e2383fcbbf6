"""`pyrestate subscriptions ...` (`sub`) and `pyrestate kafka-clusters ...` (`kc`): Kafka
sources and what they invoke, shown as the official CLI shows them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote

import typer

from pyrestate.cli import render
from pyrestate.cli.admin_client import DEFAULT_ADMIN_URL, CliError
from pyrestate.cli.common import AdminUrl, JsonOutput, admin, fail
from pyrestate.subscriptions.model import BROKER_PROPERTIES, Subscription

subscriptions = typer.Typer(no_args_is_help=True, help="Kafka subscriptions (alias: sub)")
kafka_clusters = typer.Typer(no_args_is_help=True, help="Kafka clusters (alias: kc)")

Options = Annotated[
    list[str] | None,
    typer.Option("--option", "-o", help="A Kafka consumer option KEY=VALUE (repeatable)"),
]


def _alias(group: typer.Typer, name: str, *aliases: str) -> Any:
    """Register a command under its name and, hidden, its official aliases."""

    def register(command: Any) -> Any:
        for alias in aliases:
            group.command(alias, hidden=True)(command)
        return group.command(name)(command)

    return register


def _cluster_path(name: str) -> str:
    return "/kafka-clusters/" + quote(name, safe="")


def _subscription_path(subscription_id: str) -> str:
    return "/subscriptions/" + quote(subscription_id, safe="")


def _brokers(properties: dict[str, str]) -> str:
    return next((properties[p] for p in BROKER_PROPERTIES if properties.get(p)), "")


def _local_time(stamp: str) -> str:
    """``Thu 01 Jan 1970 00:00:00 +00:00``, in this machine's time zone (as officially)."""
    try:
        moment = datetime.fromisoformat(stamp).astimezone()
    except ValueError:
        return stamp
    offset = moment.strftime("%z")
    return moment.strftime("%a %d %b %Y %H:%M:%S ") + f"{offset[:3]}:{offset[3:]}"


def _options_table(options: dict[str, str]) -> Any:
    rows = [{"key": k, "value": v} for k, v in sorted(options.items())]
    return render.table(rows, ["key", "value"])


# --- subscriptions


@_alias(subscriptions, "list", "ls")
def list_subscriptions(admin_url: AdminUrl = DEFAULT_ADMIN_URL, json: JsonOutput = False) -> None:
    """List the subscriptions."""
    with admin(admin_url) as client:
        found = client.call("GET", "/subscriptions")["subscriptions"]
    found.sort(key=lambda s: s["id"])
    if json:
        render.print_json(found)
        return
    rows = [{**s, "options": len(s.get("options", {}))} for s in found]
    render.console().print(render.table(rows, ["id", "source", "sink", "options"]))


def _show_subscription(sub: dict[str, Any], brokers: str | None) -> None:
    out = render.console()
    out.print(
        render.details(
            [
                ("ID", sub["id"]),
                ("Source", sub["source"]),
                ("Sink", sub["sink"]),
                ("Kafka brokers", brokers),
            ],
            title="Subscription:",
        )
    )
    out.print("Options:")
    out.print(_options_table(sub.get("options", {})))


def _cluster_brokers(client: Any, sub: dict[str, Any]) -> str:
    name = Subscription(sub["id"], sub["source"], sub["sink"]).cluster
    try:
        cluster = client.call("GET", _cluster_path(name))
    except CliError:
        # Its cluster was removed (forced): the subscription is an orphan.
        return f"(cluster '{name}' not found)"
    return _brokers(cluster.get("properties", {}))


@_alias(subscriptions, "describe", "get")
def describe_subscription(
    subscription_id: Annotated[str, typer.Argument(metavar="ID")],
    admin_url: AdminUrl = DEFAULT_ADMIN_URL,
    json: JsonOutput = False,
) -> None:
    """Show a subscription, the brokers it reads from and its options."""
    with admin(admin_url) as client:
        sub = client.call("GET", _subscription_path(subscription_id))
        if json:
            render.print_json(sub)
            return
        brokers = _cluster_brokers(client, sub)
    _show_subscription(sub, brokers)


@subscriptions.command("create")
def create_subscription(
    source: Annotated[str, typer.Argument(help="kafka://CLUSTER/TOPIC")],
    sink: Annotated[str, typer.Argument(help="service://SERVICE/HANDLER")],
    option: Options = None,
    admin_url: AdminUrl = DEFAULT_ADMIN_URL,
    json: JsonOutput = False,
) -> None:
    """Invoke SINK with every record of SOURCE."""
    options: dict[str, str] = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--option {item!r}: want KEY=VALUE", code=2)
        options[key] = value
    body = {"source": source, "sink": sink, "options": options}
    with admin(admin_url) as client:
        sub = client.call("POST", "/subscriptions", json=body)
        if json:
            render.print_json(sub)
            return
        brokers = _cluster_brokers(client, sub)
    render.console().print(f"Created subscription {sub['id']}", highlight=False)
    _show_subscription(sub, brokers)


@_alias(subscriptions, "delete", "rm")
def delete_subscription(
    subscription_id: Annotated[str, typer.Argument(metavar="ID")],
    admin_url: AdminUrl = DEFAULT_ADMIN_URL,
    json: JsonOutput = False,
) -> None:
    """Delete a subscription: its records are no longer consumed."""
    with admin(admin_url) as client:
        resp = client.request("DELETE", _subscription_path(subscription_id))
    if json:
        render.print_json({"id": subscription_id, "deleted": True, "status": resp.status_code})
    else:
        render.console().print(f"Deleted subscription {subscription_id}", highlight=False)


# --- Kafka clusters


@_alias(kafka_clusters, "list", "ls")
def list_clusters(admin_url: AdminUrl = DEFAULT_ADMIN_URL, json: JsonOutput = False) -> None:
    """List the Kafka clusters, configured and registered."""
    with admin(admin_url) as client:
        found = client.call("GET", "/kafka-clusters")["clusters"]
    if json:
        render.print_json(found)
        return
    rows = [
        {
            "name": c["name"],
            "brokers": _brokers(c.get("properties", {})),
            "properties": len(c.get("properties", {})),
            "created-at": _local_time(c.get("created_at", "")),
        }
        for c in found
    ]
    render.console().print(render.table(rows, ["name", "brokers", "properties", "created-at"]))


@_alias(kafka_clusters, "describe", "get")
def describe_cluster(
    name: str, admin_url: AdminUrl = DEFAULT_ADMIN_URL, json: JsonOutput = False
) -> None:
    """Show a Kafka cluster: its properties (secrets hidden) and subscriptions."""
    with admin(admin_url) as client:
        cluster = client.call("GET", _cluster_path(name), params={"include_subscriptions": "true"})
    if json:
        render.print_json(cluster)
        return
    out = render.console()
    properties = cluster.get("properties", {})
    notes = [i.get("message") for i in cluster.get("info", [])]
    out.print(
        render.details(
            [
                ("Name", cluster["name"]),
                ("Brokers", _brokers(properties)),
                ("Created at", _local_time(cluster.get("created_at", ""))),
                ("Info", " ".join(n for n in notes if n) or None),
            ],
            title="Kafka cluster:",
        )
    )
    out.print("Properties:")
    out.print(_options_table(properties))
    out.print("Subscriptions:")
    subs = cluster.get("subscriptions", [])
    out.print(render.table(subs, ["id", "source", "sink"]))
