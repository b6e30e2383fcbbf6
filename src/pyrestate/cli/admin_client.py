"""A small synchronous client for the admin API, shared by the operator commands.

It speaks only the unprefixed paths (`/services`, `/query`, ...), which pyrestate and the
official server both serve, and turns every failure into a `CliError` whose text is
what the operator sees: no tracebacks for an unreachable server or an HTTP error.
"""

from __future__ import annotations

from typing import Any

import httpx

DEFAULT_ADMIN_URL = "http://localhost:9070"
# Checked in this order after --admin-url; the second is the official CLI's variable.
ADMIN_URL_ENVVARS = ["PYRESTATE_ADMIN_URL", "RESTATE_ADMIN_URL"]


class CliError(Exception):
    """A failure to report in one line and exit with code 1."""


class AdminClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        try:
            resp = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.TransportError as e:
            raise CliError(
                f"cannot reach the admin API at {self.base_url} ({_reason(e)}); "
                f"is the server running? Set --admin-url or {ADMIN_URL_ENVVARS[0]}."
            ) from None
        if resp.status_code >= 400:
            raise CliError(_http_error(method, path, resp))
        return resp

    def call(
        self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        """The decoded JSON answer of a request."""
        return _body(self.request(method, path, json=json, params=params))

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a SQL query; JSON rows omit columns whose value is null."""
        resp = self.request(
            "POST", "/query", json={"query": sql}, headers={"accept": "application/json"}
        )
        rows = _body(resp).get("rows")
        if not isinstance(rows, list):
            raise CliError(f"unexpected answer from POST /query: {resp.text[:200]}")
        return rows


def _reason(e: httpx.TransportError) -> str:
    if isinstance(e, httpx.ConnectError):
        return "connection refused" if "refused" in str(e).lower() else f"cannot connect: {e}"
    if isinstance(e, httpx.TimeoutException):
        return "timed out"
    return str(e) or type(e).__name__


def _http_error(method: str, path: str, resp: httpx.Response) -> str:
    message = resp.text.strip()
    try:
        body = resp.json()
    except ValueError:
        pass
    else:
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            message = body["message"]
    where = f"{method} {path.split('?')[0]}"
    if resp.status_code in (404, 405) and not message:
        # An empty 404/405 means the route itself is unknown, e.g. an older server.
        message = "this server does not offer this endpoint"
    return (
        f"{where} failed with {resp.status_code} {resp.reason_phrase}: {message or '(no message)'}"
    )


def _body(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise CliError(
            f"unexpected non-JSON answer from {resp.request.method} {resp.request.url.path}: "
            f"{resp.text[:200]}"
        ) from None
