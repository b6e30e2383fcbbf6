"""Server lifecycle: a fatal error is logged with its cause and ends the process non-zero."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest

from pyrestate import server as server_module
from pyrestate.config import Settings
from pyrestate.core.changes import Changes
from pyrestate.core.commands import Invoke
from pyrestate.core.ids import InvocationId
from pyrestate.core.model import ServiceType, Target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(30)
async def test_a_failed_writer_is_logged_with_its_cause_and_ends_serve_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingress, admin, pgsql = _free_port(), _free_port(), _free_port()
    settings = Settings(
        ingress_bind=f"127.0.0.1:{ingress}",
        admin_bind=f"127.0.0.1:{admin}",
        pgsql_bind=f"127.0.0.1:{pgsql}",
        data_dir=tmp_path,
    )
    created: list[server_module.Server] = []

    class Capturing(server_module.Server):
        def __init__(self, settings: Settings) -> None:
            super().__init__(settings)
            created.append(self)

    monkeypatch.setattr(server_module, "Server", Capturing)
    # Our own handler: uvicorn's logging set-up may replace the capture of pytest's.
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("pyrestate").addHandler(handler)

    async def break_the_disk() -> None:
        for _ in range(200):
            await asyncio.sleep(0.02)
            if created and created[0]._http:
                break
        server = created[0]

        def disk_full(changes: Changes) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(server.store, "commit", disk_full)
        target = Target("Greeter", "greet", None, ServiceType.SERVICE, None)
        server.partition.submit(Invoke(InvocationId(1, bytes(16)), target, b""))

    breaking = asyncio.create_task(break_the_disk())
    # Awaited directly: SystemExit inside a task (wait_for) is re-raised by the loop.
    with pytest.raises(SystemExit, match="disk full"):
        await server_module.serve(settings)
    await breaking
    logging.getLogger("pyrestate").removeHandler(handler)
    failures = [r for r in records if r.levelno >= logging.CRITICAL]
    assert failures and "disk full" in str(failures[0].exc_info[1])  # type: ignore[index]
