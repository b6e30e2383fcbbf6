"""A workflow key's page without a browser: its run, its promise, its state."""

from __future__ import annotations

import re

import httpx
from harness import wait_until
from live_helpers import text
from live_server import Live

from examples.signup import mail_path


def test_a_run_waits_on_its_promise_until_the_signal_resolves_it(
    live: Live, http: httpx.Client
) -> None:
    started = http.post(
        live.ui("/ui/services/SignupWorkflow/handlers/run"),
        data={"key": "wf-fast", "body": '"wf@example.com"', "mode": "send"},
    )
    assert 'data-status="202"' in started.text
    mail = mail_path(live.count_dir, "wf-fast")
    wait_until(mail.exists, timeout=30, what="the verification mail")
    page = "/ui/workflows/SignupWorkflow/wf-fast"

    def promise_state() -> str:
        found = re.search(
            r"email-link</th>\s*<td><span class=\"status [\w-]+\">(\w+)",
            text(http.get(live.ui(page))),
        )
        return found.group(1) if found else "absent"

    wait_until(lambda: promise_state() == "pending", timeout=30, what="the run waiting")
    waiting = text(http.get(live.ui(page)))
    assert '"waiting for the email link"' in waiting
    secret = mail.read_text()
    clicked = http.post(
        live.ui("/ui/services/SignupWorkflow/handlers/click"),
        data={"key": "wf-fast", "body": f'"{secret}"'},
    )
    assert 'data-status="200"' in clicked.text and '"thanks"' in text(clicked)
    wait_until(
        lambda: "completed: success" in text(http.get(live.ui(page))), timeout=30, what="done"
    )
    done = text(http.get(live.ui(page)))
    assert promise_state() == "resolved"
    assert f'"{secret}"' in done
    assert '"verified"' in done
    runs = http.get(live.ui("/ui/workflows/SignupWorkflow"))
    assert "SignupWorkflow/wf-fast/run" in runs.text


def test_the_key_box_and_non_workflows(live: Live, http: httpx.Client) -> None:
    box = http.get(live.ui("/ui/workflows/SignupWorkflow"), params={"key": "no such"})
    assert box.status_code == 302
    page = text(http.get(live.ui(box.headers["location"])))
    assert 'No run of <span class="mono">run</span> for this key' in page
    assert "No promises." in page
    assert http.get(live.ui("/ui/workflows/Counter/x")).status_code == 400
