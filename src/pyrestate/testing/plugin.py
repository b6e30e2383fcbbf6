"""The pytest plugin (entry point ``pytest11``): fixtures around ``RestateTestServer``.

Define a ``restate_app`` fixture returning your ``restate.app(...)`` (or a list of apps);
``restate_server`` then gives an embedded server with them, fresh for each test::

    @pytest.fixture
    def restate_app():
        return my_service.app

    def test_checkout(restate_server):
        restate_server.call("CartObject", "addTicket", "seat-1", key="Mary")
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def restate_app() -> Any:
    raise pytest.UsageError(
        "restate_server needs your services: define a `restate_app` fixture that returns "
        "restate.app(...) (or a list of apps)"
    )


@pytest.fixture
def restate_server(restate_app: Any, tmp_path: Path) -> Iterator[Any]:
    # Imported here: loading the plugin must not cost every pytest run the server's imports.
    from pyrestate.testing.server import RestateTestServer

    apps = restate_app if isinstance(restate_app, list | tuple) else [restate_app]
    with RestateTestServer(*apps, data_dir=tmp_path / "restate") as server:
        yield server
