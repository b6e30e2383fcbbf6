"""Small helpers of the tests that read the UI's pages from the live server."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import httpx
from harness import wait_until
from live_server import Live


def text(resp: httpx.Response) -> str:
    """The page's HTML with entities decoded (messages hold quotes)."""
    return unescape(resp.text)


def link(resp: httpx.Response, pattern: str) -> str:
    """The first href of the page that matches ``pattern``."""
    found = re.search(rf'href="({pattern})"', resp.text)
    assert found is not None, f"no link like {pattern!r} on the page"
    return unescape(found.group(1))


def send(http: httpx.Client, live: Live, path: str, body: Any) -> str:
    resp = http.post(f"{live.ingress}/{path}/send", json=body)
    assert resp.status_code == 202, resp.text
    return resp.json()["invocationId"]


def call(http: httpx.Client, live: Live, path: str, body: Any = None) -> Any:
    resp = http.post(f"{live.ingress}/{path}", json=body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def status_of(http: httpx.Client, live: Live, inv: str) -> str:
    resp = http.post(
        f"{live.admin}/query",
        json={"query": f"SELECT status FROM sys_invocation WHERE id = '{inv}'"},
        headers={"accept": "application/json"},
    )
    rows = resp.json()["rows"]
    return rows[0]["status"] if rows else "gone"


def wait_status(http: httpx.Client, live: Live, inv: str, status: str) -> None:
    wait_until(lambda: status_of(http, live, inv) == status, timeout=30, what=f"{inv} {status}")
