"""Example ASGI apps served by hypercorn in a background thread, for admin API tests."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Servers:
    """Hypercorn servers in a background thread, one per app, on free ports."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self.ports = {name: free_port() for name in apps}
        self._apps = apps
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("deployments did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        tasks = []
        for name, app in self._apps.items():
            config = Config()
            config.bind = [f"127.0.0.1:{self.ports[name]}"]
            config.accesslog = None
            config.errorlog = None
            tasks.append(
                asyncio.ensure_future(serve(app, config, shutdown_trigger=self._stop.wait))
            )
        for port in self.ports.values():
            for _ in range(200):
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.02)
        self._ready.set()
        await asyncio.gather(*tasks)

    def close(self) -> None:
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
