"""The ticket-reservation app from examples/tour.py, driven through the ingress."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from harness import Deployment, Server


def call(http: httpx.Client, server: Server, path: str, body: Any = None) -> Any:
    if body is None:
        resp = http.post(f"{server.ingress_url}/{path}")
    else:
        resp = http.post(f"{server.ingress_url}/{path}", json=body)
    assert resp.status_code == 200, f"{path}: {resp.status_code} {resp.text}"
    return resp.json() if resp.content else None


def test_ticket_lifecycle(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("tour")
    assert call(http, server, "TicketObject/seat-1/status") == "AVAILABLE"
    assert call(http, server, "TicketObject/seat-1/reserve") is True
    assert call(http, server, "TicketObject/seat-1/reserve") is False
    assert call(http, server, "TicketObject/seat-1/status") == "RESERVED"
    call(http, server, "TicketObject/seat-1/unreserve")
    assert call(http, server, "TicketObject/seat-1/status") == "AVAILABLE"
    assert call(http, server, "TicketObject/seat-1/reserve") is True
    call(http, server, "TicketObject/seat-1/markAsSold")
    assert call(http, server, "TicketObject/seat-1/status") == "SOLD"
    # Sold is final.
    call(http, server, "TicketObject/seat-1/unreserve")
    assert call(http, server, "TicketObject/seat-1/status") == "SOLD"
    assert call(http, server, "TicketObject/seat-1/reserve") is False


def test_checkout_service_payment(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("tour")
    assert call(http, server, "CheckoutService/handle", {"userId": "ada", "tickets": ["a"]})
    # Nothing to pay for: the payment step fails terminally, with its code.
    resp = http.post(
        f"{server.ingress_url}/CheckoutService/handle", json={"userId": "ada", "tickets": []}
    )
    assert resp.status_code == 400, resp.text
    assert resp.json() == {"code": 400, "message": "nothing to pay for", "source": "invocation"}


@pytest.mark.calls
def test_reserve_and_checkout(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("tour")
    assert call(http, server, "CartObject/ada/addTicket", "seat-7") is True
    assert call(http, server, "CartObject/ada/addTicket", "seat-8") is True
    # Someone else's cart cannot take a seat that is already reserved.
    assert call(http, server, "CartObject/bob/addTicket", "seat-7") is False
    assert call(http, server, "CartObject/bob/getTickets") == []
    assert call(http, server, "CartObject/ada/getTickets") == ["seat-7", "seat-8"]
    assert call(http, server, "TicketObject/seat-7/status") == "RESERVED"

    assert call(http, server, "CartObject/ada/checkout") is True
    assert call(http, server, "TicketObject/seat-7/status") == "SOLD"
    assert call(http, server, "TicketObject/seat-8/status") == "SOLD"
    assert call(http, server, "CartObject/ada/getTickets") == []
    # An empty cart has nothing to check out; a sold seat can't be reserved again.
    assert call(http, server, "CartObject/ada/checkout") is False
    assert call(http, server, "CartObject/bob/addTicket", "seat-8") is False
