"""State pages without a browser: keys, values, edits with the version check, clearing."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
import pytest
from harness import wait_until
from live_helpers import call, text
from live_server import Live

from pyrestate.ui.html import UiError
from pyrestate.ui.state import Entry, new_state
from pyrestate.ui.values import show_bytes


def _entry(name: str, raw: bytes) -> Entry:
    return Entry(name, raw, show_bytes(raw))


def test_an_edit_form_becomes_the_new_state() -> None:
    entries = [_entry("a", b"1"), _entry("b", b"\xff"), _entry("c", b"3")]
    values = {"value:a": "10", "remove:c": "1", "new_name": "d", "new_value": '"x"'}
    # b is binary: the form has no field for it and it stays as it was.
    assert new_state(values, entries) == {"a": b"10", "b": b"\xff", "d": b'"x"'}
    assert new_state({"clear": "1", "confirm": "1", "value:a": "2"}, entries) == {}
    with pytest.raises(UiError, match="confirmation") as refused:
        new_state({"clear": "1", "value:a": "2"}, entries)
    assert refused.value.status == 400
    with pytest.raises(UiError, match="already has an entry 'a'"):
        new_state({"new_name": "a"}, entries)


def _version(page: str) -> str:
    found = re.search(r'name="version" value="([^"]*)"', page)
    assert found is not None
    return found.group(1)


def test_edit_then_read_back_over_the_ingress(live: Live, http: httpx.Client) -> None:
    call(http, live, "Counter/st-1/add", 5)
    keys = http.get(live.ui("/ui/state/Counter"))
    assert 'href="/ui/state/Counter/st-1"' in keys.text
    page = http.get(live.ui("/ui/state/Counter/st-1"))
    assert page.status_code == 200
    assert re.search(r'count</th><td>\s*<pre class="payload">5</pre>', page.text)
    version = _version(page.text)
    edited = http.post(
        live.ui("/ui/state/Counter/st-1"),
        data={"version": version, "value:count": "42", "new_name": "note", "new_value": '"hi"'},
    )
    assert edited.status_code == 303
    assert edited.headers["location"] == "/ui/state/Counter/st-1?submitted=1"
    wait_until(lambda: call(http, live, "Counter/st-1/get") == 42, timeout=10, what="count 42")
    shown = text(http.get(live.ui(edited.headers["location"])))
    assert "Change submitted" in shown and '"hi"' in shown
    # A form loaded before that change is refused, with the state as it is now.
    stale = http.post(
        live.ui("/ui/state/Counter/st-1"), data={"version": version, "clear": "1", "confirm": "1"}
    )
    assert stale.status_code == 409
    assert "The state changed since the form was loaded" in text(stale)
    cleared = http.post(
        live.ui("/ui/state/Counter/st-1"),
        data={"version": _version(stale.text), "clear": "1", "confirm": "1"},
    )
    assert cleared.status_code == 303
    wait_until(lambda: call(http, live, "Counter/st-1/get") == 0, timeout=10, what="cleared")
    assert "No state." in http.get(live.ui("/ui/state/Counter/st-1")).text


def test_keys_with_odd_characters_and_the_key_box(live: Live, http: httpx.Client) -> None:
    key = "a/b c?d#é'"
    call(http, live, f"Counter/{quote(key, safe='')}/add", 1)
    box = http.get(live.ui("/ui/state/Counter"), params={"key": key})
    assert box.status_code == 302
    page = http.get(live.ui(box.headers["location"]))
    assert page.status_code == 200
    assert f'State of <span class="mono">Counter/{key}</span>' in text(page)
    assert '<pre class="payload">1</pre>' in page.text


def test_only_keyed_services_have_state(live: Live, http: httpx.Client) -> None:
    index = http.get(live.ui("/ui/state")).text
    assert 'href="/ui/state/Counter"' in index and 'href="/ui/state/SignupWorkflow"' in index
    assert 'href="/ui/state/Booking"' not in index
    assert http.get(live.ui("/ui/state/Booking")).status_code == 400
