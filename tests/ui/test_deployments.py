"""Deployments without a browser: register from the form, details, remove."""

from __future__ import annotations

import httpx
import pytest
from live_helpers import text
from live_server import Live

from pyrestate.ui.deployments import parse_headers


def test_header_lines() -> None:
    assert parse_headers("Authorization: Bearer x:y\n\n  X-Team :  a  \n") == {
        "Authorization": "Bearer x:y",
        "X-Team": "a",
    }
    for bad in ("no colon", ": empty name", "Two words: x"):
        with pytest.raises(ValueError, match="line 1 is not a header"):
            parse_headers(bad)


def test_register_see_and_remove(live: Live, http: httpx.Client) -> None:
    uri = live.deployments["tour"].url
    refused = http.post(live.ui("/ui/deployments"), data={"uri": "http://127.0.0.1:1/"})
    assert refused.status_code >= 400
    assert "Registration refused:" in text(refused)
    registered = http.post(live.ui("/ui/deployments"), data={"uri": uri, "headers": "X-Demo: yes"})
    assert registered.status_code == 303, text(registered)
    detail = text(http.get(live.ui(registered.headers["location"])))
    assert "Registered." in detail
    for expected in (uri, "CartObject", "TicketObject", "CheckoutService", "x-demo: yes"):
        assert expected in detail
    assert "restate-sdk-python" in detail  # the SDK version the deployment told
    assert "v5 to v" in detail  # protocol versions
    dep_id = registered.headers["location"].split("/")[-1].split("?")[0]
    assert dep_id in http.get(live.ui("/ui/deployments")).text
    confirm = http.get(live.ui(f"/ui/deployments/{dep_id}/remove"))
    assert "Yes, remove it" in confirm.text
    removed = http.post(live.ui(f"/ui/deployments/{dep_id}/remove"))
    assert removed.status_code == 303
    assert http.get(f"{live.admin}/deployments/{dep_id}").status_code == 404
    assert http.get(live.ui(f"/ui/deployments/{dep_id}")).status_code == 404
