"""Invocations without a browser: the list and its pages, one invocation's journal, actions."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from harness import wait_until
from live_helpers import link, send, status_of, text, wait_status
from live_server import Live


def _lines(count_dir: Path, name: str) -> list[str]:
    path = count_dir / name
    return path.read_text().splitlines() if path.exists() else []


def _ids(page: str) -> list[str]:
    return re.findall(r'href="/ui/invocations/(inv_\w+)"', page)


def test_the_list_pages_through_every_invocation_once(live: Live, http: httpx.Client) -> None:
    sent = {send(http, live, "Counter/paging/add", 1) for _ in range(57)}
    first = http.get(live.ui("/ui/invocations"), params={"service": "Counter", "key": "paging"})
    assert first.status_code == 200
    page1 = _ids(first.text)
    assert len(page1) == 50
    second = http.get(live.ui(link(first, '/ui/invocations\\?[^"]*before_id=[^"]+')))
    page2 = _ids(second.text)
    assert len(page2) == 7
    assert 'rel="next"' not in second.text
    assert set(page1) | set(page2) == sent and not set(page1) & set(page2)
    # Newest first: the first page ends where the second begins.
    assert 'href="/ui/invocations?service=Counter&amp;key=paging">Newest' in second.text


def test_filters_by_status_handler_and_time(live: Live, http: httpx.Client) -> None:
    inv = send(http, live, "Counter/filtering/add", 3)
    wait_status(http, live, inv, "completed")
    base = {"service": "Counter", "key": "filtering"}

    def listed(**more: str) -> list[str]:
        return _ids(http.get(live.ui("/ui/invocations"), params={**base, **more}).text)

    assert listed(status="completed") == [inv]
    assert listed(status="running") == []
    assert listed(handler="add") == [inv]
    assert listed(handler="get") == []
    assert listed(since="2000-01-01T00:00") == [inv]
    assert listed(until="2000-01-01T00:00") == []


def test_a_finished_invocation_shows_its_journal(live: Live, http: httpx.Client) -> None:
    resp = http.post(f"{live.ingress}/Counter/journal-1/add", json=6)
    inv = resp.headers["x-restate-id"]
    page = http.get(live.ui(f"/ui/invocations/{inv}"))
    assert page.status_code == 200
    shown = text(page)
    assert "Counter/journal-1/add" in shown
    assert "completed: success" in shown
    steps = re.findall(r'<span class="idx">#(\d+)</span>\s*<strong>(\w+)</strong>', page.text)
    assert steps == [("0", "Input"), ("1", "GetEagerState"), ("2", "SetState"), ("3", "Output")]
    assert '<pre class="payload">6</pre>' in page.text
    # A completed invocation can only be purged.
    assert f'href="/ui/invocations/{inv}/purge"' in page.text
    assert f'href="/ui/invocations/{inv}/cancel"' not in page.text


def test_a_call_links_to_its_callee_which_shows_its_sleep(live: Live, http: httpx.Client) -> None:
    parent = send(http, live, "Parent/callChild", "ui-1")
    (child,) = wait_until(
        lambda: _lines(live.count_dir, "parent-ui-1.children"), timeout=30, what="child id"
    )
    page = http.get(live.ui(f"/ui/invocations/{parent}"))
    assert f'href="/ui/invocations/{child}"' in page.text
    assert "waiting for its result" in page.text
    child_page = text(http.get(live.ui(f"/ui/invocations/{child}")))
    assert "<strong>Sleep</strong>" in child_page
    assert re.search(r"wakes up at</dt><dd>\s*<span class=\"pre\">\d{4}-\d\d-\d\d ", child_page)
    assert f'href="/ui/invocations/{parent}"' in child_page  # invoked by
    http.patch(f"{live.admin}/invocations/{parent}/kill")


def test_cancel_a_retry_loop_after_confirming(live: Live, http: httpx.Client) -> None:
    inv = send(http, live, "Booking/book", "ui-fast")
    wait_until(
        lambda: _lines(live.count_dir, "booking-ui-fast.log").count("charge failed") >= 2,
        timeout=30,
        what="the charge failing and retried",
    )
    page = text(http.get(live.ui(f"/ui/invocations/{inv}")))
    assert "RuntimeError('the payment provider is down')" in page
    assert re.search(r"At command 2:\s*Run\s*“charge”", page)
    assert "last failure here" in page
    confirm = http.get(live.ui(f"/ui/invocations/{inv}/cancel"))
    assert confirm.status_code == 200
    assert "Yes, cancel it" in confirm.text
    done = http.post(live.ui(f"/ui/invocations/{inv}/cancel"))
    assert done.status_code == 303
    assert done.headers["location"] == f"/ui/invocations/{inv}?done=cancel"
    wait_status(http, live, inv, "completed")
    after = text(http.get(live.ui(done.headers["location"])))
    assert "Cancellation requested" in after and "completed: failure" in after
    # Again: refused as the admin API refuses it, on the confirmation page.
    again = http.post(live.ui(f"/ui/invocations/{inv}/cancel"))
    assert again.status_code == 409
    assert "was already completed" in text(again)
    # Purged, it is gone.
    purged = http.post(live.ui(f"/ui/invocations/{inv}/purge"))
    assert purged.headers["location"] == f"/ui/invocations?purged={inv}"
    assert http.get(live.ui(f"/ui/invocations/{inv}")).status_code == 404
    assert status_of(http, live, inv) == "gone"
