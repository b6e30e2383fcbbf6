"""The ``pyrestate`` command."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from pyrestate.cli.operate import operate
from pyrestate.cli.subscriptions import kafka_clusters, subscriptions
from pyrestate.config import ConfigError, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="pyrestate: durable execution")


@app.callback()
def main() -> None:
    """A Restate-compatible durable execution server."""


IngressBind = Annotated[
    str | None, typer.Option(help="Ingress HOST:PORT [default: 127.0.0.1:8080]")
]
AdminBind = Annotated[str | None, typer.Option(help="Admin HOST:PORT [default: 127.0.0.1:9070]")]
PgsqlBind = Annotated[
    str | None,
    typer.Option(help="PostgreSQL protocol (psql) HOST:PORT [default: 127.0.0.1:9071]"),
]
DataDir = Annotated[Path | None, typer.Option(help="Where data lives [default: ./pyrestate-data]")]
BaseDir = Annotated[
    Path | None, typer.Option(help="Same as --data-dir (the official server's name)")
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config-file", "-c", help="TOML configuration file")
]
IdentityKey = Annotated[
    Path | None, typer.Option(help="ed25519 private key (PEM) to sign requests to services")
]
AsgiImport = Annotated[
    bool | None,
    typer.Option(
        "--asgi-import/--no-asgi-import",
        help="Let the admin API register asgi://module/app deployments, importing the module "
        "into this process",
    ),
]
LogLevel = Annotated[str, typer.Option(help="debug, info, warning, error")]


@app.command()
def server(
    ingress_bind: IngressBind = None,
    admin_bind: AdminBind = None,
    pgsql_bind: PgsqlBind = None,
    data_dir: DataDir = None,
    base_dir: BaseDir = None,
    config_file: ConfigFile = None,
    request_identity_private_key_pem_file: IdentityKey = None,
    asgi_import: AsgiImport = None,
    log_level: LogLevel = "info",
) -> None:
    """Run the server: ingress, admin, partition and invoker in one process."""
    flags = _flags(
        ingress_bind,
        admin_bind,
        pgsql_bind,
        data_dir or base_dir,
        request_identity_private_key_pem_file,
        asgi_import,
    )
    _serve(flags, config_file, log_level, [])


@app.command()
def run(
    apps: Annotated[list[str], typer.Argument(help="The services' ASGI apps, as module:attribute")],
    ingress_bind: IngressBind = None,
    admin_bind: AdminBind = None,
    pgsql_bind: PgsqlBind = None,
    data_dir: DataDir = None,
    base_dir: BaseDir = None,
    config_file: ConfigFile = None,
    request_identity_private_key_pem_file: IdentityKey = None,
    asgi_import: AsgiImport = None,
    log_level: LogLevel = "info",
) -> None:
    """Run the server with services in the same process (e.g. ``examples.demo:app``),
    registered at start; no ports or HTTP between the server and them."""
    from pyrestate.invoker import inprocess

    # Modules of the current directory, as uvicorn and hypercorn find them.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    uris = []
    for spec in apps:
        module, sep, attribute = spec.partition(":")
        if not module or (sep and not attribute):
            typer.echo(f"error: {spec!r}: want module:attribute", err=True)
            raise typer.Exit(2)
        attribute = attribute or "app"
        try:
            found = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as e:
            typer.echo(f"error: cannot load {spec}: {e}", err=True)
            raise typer.Exit(2) from None
        uri = inprocess.app_uri(module, attribute)
        inprocess.mount(uri, found)
        uris.append(uri)
    flags = _flags(
        ingress_bind,
        admin_bind,
        pgsql_bind,
        data_dir or base_dir,
        request_identity_private_key_pem_file,
        asgi_import,
    )
    _serve(flags, config_file, log_level, uris)


def _flags(
    ingress_bind: str | None,
    admin_bind: str | None,
    pgsql_bind: str | None,
    data_dir: Path | None,
    identity_key: Path | None,
    asgi_import: bool | None,
) -> dict[str, object]:
    return {
        "ingress_bind": ingress_bind,
        "admin_bind": admin_bind,
        "pgsql_bind": pgsql_bind,
        "data_dir": data_dir,
        "request_identity_private_key_pem_file": identity_key,
        "asgi_import": asgi_import,
    }


def _serve(
    flags: dict[str, object], config_file: Path | None, log_level: str, in_process: list[str]
) -> None:
    from pyrestate.server import serve

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per in-process request
    try:
        settings = load_settings(flags, config_file=config_file)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings, in_process))
    else:
        uvloop.run(serve(settings, in_process))


identity = typer.Typer(no_args_is_help=True, help="Request identity (signed requests)")
app.add_typer(identity, name="identity")
# Operator commands (services, deployments, invocations, kv, sql, status) at top level.
app.add_typer(operate)
# Kafka: under the official CLI's names and (hidden) short aliases.
app.add_typer(subscriptions, name="subscriptions")
app.add_typer(subscriptions, name="sub", hidden=True)
app.add_typer(kafka_clusters, name="kafka-clusters")
app.add_typer(kafka_clusters, name="kc", hidden=True)


@identity.command("public-key")
def public_key(
    private_key_pem_file: Annotated[
        Path | None, typer.Option(help="ed25519 private key (PEM) the server signs with")
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config-file", "-c", help="TOML configuration file")
    ] = None,
) -> None:
    """Print the public key, as services configure it (``publickeyv1_...``)."""
    from pyrestate.identity import IdentityKeyError, public_key_from_pem

    try:
        settings = load_settings(
            {"request_identity_private_key_pem_file": private_key_pem_file},
            config_file=config_file,
        )
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    path = settings.request_identity_private_key_pem_file
    if path is None:
        typer.echo("error: no private key configured (--private-key-pem-file)", err=True)
        raise typer.Exit(2)
    try:
        typer.echo(public_key_from_pem(path))
    except IdentityKeyError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
