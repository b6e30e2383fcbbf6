"""The admin API called in-process, through its own ASGI app (httpx's ASGI transport).

Whoever uses it (the web UI's pages, the server registering its in-process services)
reads and acts exactly as any client of the admin API does: same routes, same checks,
same answers, without a network hop and without reaching around the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from pyrestate import asgi

AsgiApp = Callable[[asgi.Scope, asgi.Receive, asgi.Send], Awaitable[None]]


class ApiError(Exception):
    """A non-2xx answer of the admin API, with its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _message(resp: httpx.Response) -> str:
    """What an error answer says: its JSON ``message``, else its text."""
    try:
        value = resp.json()
    except ValueError:
        value = None
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return value["message"]
    return resp.text or f"HTTP {resp.status_code}"


class AdminApi:
    def __init__(self, app: AsgiApp) -> None:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        self._client = httpx.AsyncClient(transport=transport, base_url="http://admin")

    async def call(self, method: str, target: str, body: Any = None) -> httpx.Response:
        """Any request (``target`` is a path with an optional query string, quoted as a
        client sends it); ApiError unless the answer is 2xx."""
        resp = await self._client.request(method, target, json=body)
        if not resp.is_success:
            raise ApiError(resp.status_code, _message(resp))
        return resp

    async def get(self, target: str) -> Any:
        return (await self.call("GET", target)).json()

    async def query(self, sql: str) -> list[dict[str, Any]]:
        """The rows of a SQL query (``POST /query``); NULL columns are left out of a row."""
        resp = await self._client.post(
            "/query", json={"query": sql}, headers={"accept": "application/json"}
        )
        if resp.status_code != 200:
            raise ApiError(resp.status_code, _message(resp))
        return list(resp.json()["rows"])
