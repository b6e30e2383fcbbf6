"""The playground without a browser: forms posted to the live server's admin port."""

from __future__ import annotations

import httpx
from live_helpers import link, status_of, text
from live_server import Live

ADD = "/ui/services/Counter/handlers/add"


def test_the_form_asks_for_a_key_and_starts_from_the_input_schema(
    live: Live, http: httpx.Client
) -> None:
    page = http.get(live.ui(ADD))
    assert page.status_code == 200
    assert '<input id="key" name="key"' in page.text
    assert ">0</textarea>" in page.text  # Counter.add takes a JSON integer
    plain = http.get(live.ui("/ui/services/Booking/handlers/book"))
    assert '<input id="key"' not in plain.text  # a plain service has no keys
    assert ">&#34;&#34;</textarea>" in plain.text


def test_a_call_shows_status_headers_and_body(live: Live, http: httpx.Client) -> None:
    resp = http.post(live.ui(ADD), data={"key": "pg-1", "body": "4", "mode": "call"})
    assert resp.status_code == 200
    page = text(resp)
    assert f"POST {live.ingress}/Counter/pg-1/add" in page
    assert 'data-status="200">200 OK' in page
    assert '<pre class="payload">4</pre>' in page
    assert "content-type</th>" in page
    inv = link(resp, '/ui/invocations/inv_[^"]+').rsplit("/", 1)[1]
    assert status_of(http, live, inv) == "completed"


def test_htmx_gets_the_answer_panel_alone(live: Live, http: httpx.Client) -> None:
    resp = http.post(
        live.ui(ADD), data={"key": "pg-2", "body": "1"}, headers={"hx-request": "true"}
    )
    assert resp.status_code == 200
    assert "<html" not in resp.text and 'data-status="200"' in resp.text
    # A refused form is also a panel (htmx swaps only 2xx answers).
    bad = http.post(live.ui(ADD), data={"body": "1"}, headers={"hx-request": "true"})
    assert bad.status_code == 200 and "needs a key" in bad.text


def test_bad_forms_are_explained(live: Live, http: httpx.Client) -> None:
    cases = [
        ({"key": "pg-3", "body": "{nope"}, "The body is not valid JSON"),
        ({"body": "1"}, "This handler needs a key"),
        ({"key": "pg-3", "body": "1", "delay": "1s"}, "A delay applies to sends only"),
        ({"key": "pg-3", "body": "1", "mode": "yell"}, "Choose to call"),
    ]
    for data, says in cases:
        resp = http.post(live.ui(ADD), data=data)
        assert resp.status_code == 400, data
        assert says in text(resp)
        assert f'value="{data.get("key", "")}"' in resp.text  # the form keeps what was typed


def test_a_delayed_send_with_an_idempotency_key(live: Live, http: httpx.Client) -> None:
    data = {"key": "pg-4", "body": "2", "mode": "send", "delay": "1h", "idempotency_key": "i-1"}
    first = http.post(live.ui(ADD), data=data)
    assert first.status_code == 200
    assert 'data-status="202">202 Accepted' in first.text
    inv = link(first, '/ui/invocations/inv_[^"]+').rsplit("/", 1)[1]
    assert status_of(http, live, inv) == "scheduled"
    again = http.post(live.ui(ADD), data=data)
    assert inv in again.text  # the same invocation: the idempotency key held
    # The ingress's own refusals are shown as it answered them.
    bad = http.post(live.ui(ADD), data={**data, "idempotency_key": "", "delay": "soon"})
    assert 'data-status="400"' in bad.text
    http.patch(f"{live.admin}/invocations/{inv}/kill")


def test_unknown_targets_are_404_pages(live: Live, http: httpx.Client) -> None:
    assert http.get(live.ui("/ui/services/Counter/handlers/nope")).status_code == 404
    assert http.post(live.ui("/ui/services/Nope/handlers/add"), data={}).status_code == 404
