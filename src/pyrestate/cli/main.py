"""The ``pyrestate`` command."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated

import typer

from pyrestate.cli.operate import operate
from pyrestate.config import ConfigError, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="pyrestate: durable execution")


@app.callback()
def main() -> None:
    """A Restate-compatible durable execution server."""


@app.command()
def server(
    ingress_bind: Annotated[
        str | None, typer.Option(help="Ingress HOST:PORT [default: 127.0.0.1:8080]")
    ] = None,
    admin_bind: Annotated[
        str | None, typer.Option(help="Admin HOST:PORT [default: 127.0.0.1:9070]")
    ] = None,
    pgsql_bind: Annotated[
        str | None,
        typer.Option(help="PostgreSQL protocol (psql) HOST:PORT [default: 127.0.0.1:9071]"),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where data lives [default: ./pyrestate-data]")
    ] = None,
    base_dir: Annotated[
        Path | None, typer.Option(help="Same as --data-dir (the official server's name)")
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config-file", "-c", help="TOML configuration file")
    ] = None,
    request_identity_private_key_pem_file: Annotated[
        Path | None, typer.Option(help="ed25519 private key (PEM) to sign requests to services")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    """Run the server: ingress, admin, partition and invoker in one process."""
    from pyrestate.server import serve

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(
            {
                "ingress_bind": ingress_bind,
                "admin_bind": admin_bind,
                "pgsql_bind": pgsql_bind,
                "data_dir": data_dir or base_dir,
                "request_identity_private_key_pem_file": request_identity_private_key_pem_file,
            },
            config_file=config_file,
        )
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


identity = typer.Typer(no_args_is_help=True, help="Request identity (signed requests)")
app.add_typer(identity, name="identity")
# Operator commands (services, deployments, invocations, kv, sql, status) at top level.
app.add_typer(operate)


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
