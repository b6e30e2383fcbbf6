"""The overview on a live server: services with handlers and types, deployments, counts."""

from __future__ import annotations

import re

import httpx
from live_helpers import text
from live_server import Live

from pyrestate.ui.sql import STATUSES


def test_services_handlers_types_and_deployments(live: Live, http: httpx.Client) -> None:
    resp = http.get(live.ui())
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    page = text(resp)
    for name, kind in (
        ("Counter", "virtual object"),
        ("SignupWorkflow", "workflow"),
        ("Booking", "service"),
    ):
        assert re.search(rf"{name} <span class=\"tag\">{kind}</span>", page), name
    assert 'href="/ui/services/Counter/handlers/slowAdd"' in page
    assert "exclusive" in page and "shared" in page
    for dep in ("counter", "control", "signup"):
        assert live.deployments[dep].url in page
    # The counts refresh themselves (htmx polls the fragment).
    assert 'hx-get="/ui/fragments/counts" hx-trigger="every 5s"' in page


def test_the_counts_fragment_has_every_status(live: Live, http: httpx.Client) -> None:
    resp = http.get(live.ui("/ui/fragments/counts"))
    assert resp.status_code == 200
    assert "<html" not in resp.text
    for status in STATUSES:
        assert f'href="/ui/invocations?status={status}"' in resp.text
