"""The admin API as the pages use it: called in-process through its own ASGI app.

The UI reads and acts exactly as any client of the admin API does (same routes, same
checks, same answers), without a network hop and without reaching around the API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from pyrestate import asgi

AsgiApp = Callable[[asgi.Scope, asgi.Receive, asgi.Send], Awaitable[None]]


class ApiError(Exception):
    """A non-2xx answer of the admin API, with its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def message(self) -> str:
        """What an error answer says: its JSON ``message``, else its text."""
        try:
            value = self.json()
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("message"), str):
            return value["message"]
        return self.body.decode(errors="replace") or f"HTTP {self.status}"


class AdminApi:
    def __init__(self, app: AsgiApp) -> None:
        self._app = app

    async def _request(
        self, method: str, target: str, body: Any, headers: list[tuple[str, str]]
    ) -> Answer:
        path, _, query = target.partition("?")
        content = b"" if body is None else json.dumps(body).encode()
        if body is not None:
            headers = [*headers, ("content-type", "application/json")]
        scope: asgi.Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote(path),
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in headers],
            "client": None,
            "server": None,
        }
        chunks: list[bytes] = []
        status = 500

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": content, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, send)
        return Answer(status, b"".join(chunks))

    async def call(self, method: str, target: str, body: Any = None) -> Answer:
        """Any request (``target`` is a path with an optional query string, quoted as a
        client sends it); ApiError unless the answer is 2xx."""
        answer = await self._request(method, target, body, [])
        if not 200 <= answer.status < 300:
            raise ApiError(answer.status, answer.message())
        return answer

    async def get(self, target: str) -> Any:
        return (await self.call("GET", target)).json()

    async def query(self, sql: str) -> list[dict[str, Any]]:
        """The rows of a SQL query (``POST /query``); NULL columns are left out of a row."""
        answer = await self._request(
            "POST", "/query", {"query": sql}, [("accept", "application/json")]
        )
        if answer.status != 200:
            raise ApiError(answer.status, answer.message())
        return answer.json()["rows"]
