"""Running `pyrestate` operator commands in-process, against a test server."""

from __future__ import annotations

import json
from typing import Any

from click.testing import Result
from harness import Server
from typer.testing import CliRunner

from pyrestate.cli.main import app


def run(server: Server | str, *args: str, code: int = 0) -> Result:
    """`pyrestate ARGS --admin-url URL`; fails the test unless it exits with `code`."""
    url = server if isinstance(server, str) else server.admin_url
    # No PYRESTATE_/RESTATE_ADMIN_URL from the developer's shell may leak in.
    env = {"PYRESTATE_ADMIN_URL": None, "RESTATE_ADMIN_URL": None}
    result = CliRunner().invoke(app, [*args, "--admin-url", url], env=env)
    assert result.exit_code == code, (
        f"pyrestate {' '.join(args)} exited {result.exit_code}, not {code}\n"
        f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
    )
    return result


def run_json(server: Server, *args: str) -> Any:
    return json.loads(run(server, *args, "--json").stdout)
