"""Options every operator command takes, and the one place their failures are reported."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer

from pyrestate.cli.admin_client import ADMIN_URL_ENVVARS, AdminClient, CliError

AdminUrl = Annotated[
    str,
    typer.Option(
        "--admin-url",
        envvar=ADMIN_URL_ENVVARS,
        show_envvar=True,
        help="Admin API of the server",
    ),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")]


@contextmanager
def admin(url: str) -> Iterator[AdminClient]:
    """A client for the command's body; a `CliError` inside ends the command with exit 1."""
    client = AdminClient(url)
    try:
        yield client
    except CliError as e:
        fail(str(e))
    finally:
        client.close()


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)
