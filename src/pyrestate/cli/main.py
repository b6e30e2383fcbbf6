"""The ``pyrestate`` command."""

from __future__ import annotations

import asyncio
import importlib
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
LogLevel = Annotated[
    str | None,
    typer.Option(
        help="pyrestate's own level, the rest at warn (short for --log-filter "
        "warn,pyrestate=LEVEL): trace, debug, info, warn, error, off; default info"
    ),
]
LogFormat = Annotated[
    str | None,
    typer.Option(
        help="pretty (one line per record), compact or json (one object per line); "
        "env RESTATE_LOG_FORMAT, default pretty"
    ),
]
LogFilter = Annotated[
    str | None,
    typer.Option(
        help="Levels per logger, EnvFilter syntax: warn,restate=info,pyrestate.invoker=debug "
        "(restate and restate_* stand for pyrestate's loggers); env RUST_LOG, else "
        "RESTATE_LOG_FILTER, default warn,restate=info"
    ),
]
TracingEndpoint = Annotated[
    str | None,
    typer.Option(
        help="OTLP collector for traces: http://host:4317 (gRPC) or "
        "otlp+http://host:4318/v1/traces (HTTP)"
    ),
]


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
    tracing_endpoint: TracingEndpoint = None,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
    log_filter: LogFilter = None,
) -> None:
    """Run the server: ingress, admin, partition and invoker in one process."""
    _setup_logs(log_format, log_filter, log_level)
    flags = _flags(
        ingress_bind,
        admin_bind,
        pgsql_bind,
        data_dir or base_dir,
        request_identity_private_key_pem_file,
        asgi_import,
        tracing_endpoint,
    )
    _serve(flags, config_file, [])


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
    tracing_endpoint: TracingEndpoint = None,
    log_level: LogLevel = None,
    log_format: LogFormat = None,
    log_filter: LogFilter = None,
) -> None:
    """Run the server with services in the same process (e.g. ``examples.demo:app``),
    registered at start; no ports or HTTP between the server and them."""
    from pyrestate.invoker import inprocess

    # Before the apps are imported: what they log at import has the chosen format too.
    _setup_logs(log_format, log_filter, log_level)
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
        tracing_endpoint,
    )
    _serve(flags, config_file, uris)


def _flags(
    ingress_bind: str | None,
    admin_bind: str | None,
    pgsql_bind: str | None,
    data_dir: Path | None,
    identity_key: Path | None,
    asgi_import: bool | None,
    tracing_endpoint: str | None,
) -> dict[str, object]:
    return {
        "tracing_endpoint": tracing_endpoint,
        "ingress_bind": ingress_bind,
        "admin_bind": admin_bind,
        "pgsql_bind": pgsql_bind,
        "data_dir": data_dir,
        "request_identity_private_key_pem_file": identity_key,
        "asgi_import": asgi_import,
    }


def _setup_logs(log_format: str | None, log_filter: str | None, log_level: str | None) -> None:
    from pyrestate import logs

    try:
        logs.setup(log_format, log_filter, log_level, os.environ)
    except logs.LogConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


def _serve(flags: dict[str, object], config_file: Path | None, in_process: list[str]) -> None:
    from pyrestate.server import serve

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
