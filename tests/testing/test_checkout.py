"""The README's example: the Tour's ticket checkout tested in-process, its 15-minute
reservation timer fast-forwarded with the virtual clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from examples import tour
from pyrestate.testing import RestateTestServer


@pytest.fixture
def restate_app() -> object:
    return tour.app


def test_a_reservation_expires_after_15_minutes(restate_server: RestateTestServer) -> None:
    assert restate_server.call("CartObject", "addTicket", "seat-7", key="Mary") is True
    assert restate_server.state("CartObject", "Mary") == {"tickets": ["seat-7"]}
    assert restate_server.call("TicketObject", "status", key="seat-7") == "RESERVED"

    restate_server.advance(timedelta(minutes=14))
    assert restate_server.call("CartObject", "getTickets", key="Mary") == ["seat-7"]

    restate_server.advance(timedelta(minutes=2))  # past the 15 minutes
    assert restate_server.call("CartObject", "getTickets", key="Mary") == []
    assert restate_server.call("TicketObject", "status", key="seat-7") == "AVAILABLE"


def test_a_bought_ticket_stays_sold_when_its_reservation_ends(
    restate_server: RestateTestServer,
) -> None:
    restate_server.call("CartObject", "addTicket", "seat-8", key="Ada")
    assert restate_server.call("CartObject", "checkout", key="Ada") is True
    restate_server.advance(timedelta(minutes=15))
    assert restate_server.call("TicketObject", "status", key="seat-8") == "SOLD"
    expired = restate_server.invocations(service="CartObject")
    assert {i["target_handler_name"] for i in expired} == {"addTicket", "checkout", "expireTicket"}
    assert all(i["status"] == "completed" for i in expired)


def test_the_readme_shows_this_file() -> None:
    from pathlib import Path  # here: the README's copy of the lines above has no use for it

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    shown = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert shown.strip() in Path(__file__).read_text()
