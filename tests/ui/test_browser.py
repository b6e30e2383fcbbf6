"""The web UI in a real browser: Debian's Chromium, driven by Playwright, against the live
server with official-SDK services.

Each scenario is what a user does by hand: register a deployment, call a handler from the
playground and open its journal, cancel an invocation stuck in a retry loop, edit an
object's state, resolve a workflow's promise through its signal handler. Every page
visited is checked for unlabelled form fields; with PYRESTATE_UI_SCREENSHOTS set, each
page is also saved there as a PNG (the README's screenshots are made so).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from harness import wait_until
from live_helpers import call
from live_server import Live
from playwright.sync_api import Browser, Page, expect, sync_playwright

from examples.signup import mail_path

CHROMIUM = "/usr/bin/chromium"
# Debian's build, headless, talking to nothing but the server under test.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = os.environ.get("PYRESTATE_UI_SCREENSHOTS")

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} missing (scripts/setup.sh installs it)"
)


# Module-scoped: the sync API keeps an event loop running while it is open, which the
# async tests of other modules could not start theirs under.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server_log_checked: None) -> Iterator[Page]:
    # A laptop screen.
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


def seen(page: Page, name: str | None = None) -> None:
    """Check what every page must have; keep a screenshot under ``name`` when asked to."""
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
              .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))
              .map(e => e.outerHTML)"""
    )
    assert unlabelled == [], f"form fields without a label on {page.url}"
    if SCREENSHOTS and name is not None:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def test_register_a_deployment(live: Live, page: Page) -> None:
    page.goto(live.ui("/ui/deployments"))
    page.get_by_label("URI", exact=True).fill(live.deployments["demo"].url)
    page.get_by_label("Additional headers").fill("X-Team: ui-tests")
    seen(page, "deployments")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("status")).to_have_text("Registered.")
    expect(page.get_by_role("heading", name=re.compile("Greeter"))).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Visits"))).to_be_visible()
    expect(page.get_by_text("x-team: ui-tests")).to_be_visible()
    seen(page, "deployment")
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_role("link", name="Playground of Greeter/greet")).to_be_visible()


def test_playground_call_and_its_journal_by_keyboard(live: Live, page: Page) -> None:
    page.goto(live.ui())
    expect(page.get_by_text("Invocations by status")).to_be_visible()
    seen(page)
    # The first stop of the keyboard skips the navigation.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_role("link", name="Playground of Counter/add").click()
    expect(page.get_by_label("Body (JSON)")).to_have_value("0")  # from the input schema
    page.get_by_label("Key", exact=True).focus()
    page.keyboard.type("browser-1")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Body (JSON)")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("7")
    page.evaluate("window.stayed = true")
    page.get_by_role("button", name="Send request").focus()
    page.keyboard.press("Enter")
    # htmx puts the answer beside the form: the page was not reloaded.
    answer = page.locator("#reply")
    expect(answer.locator(".http-status")).to_have_text("200 OK")
    assert page.evaluate("window.stayed === true")
    expect(answer.locator("pre.payload")).to_have_text("7")
    expect(answer.get_by_text("x-restate-id")).to_be_visible()
    expect(page.get_by_label("Key", exact=True)).to_have_value("browser-1")
    seen(page, "playground")
    answer.get_by_role("link", name=re.compile("^inv_")).click()
    expect(page.get_by_text("completed: success")).to_be_visible()
    steps = page.locator("ol.timeline > li .step-head strong")
    expect(steps).to_have_text(["Input", "GetEagerState", "SetState", "Output"])
    expect(page.locator("#entry-3 pre.payload")).to_have_text("7")
    seen(page, "invocation")


def test_cancel_an_invocation_stuck_in_a_retry_loop(live: Live, page: Page) -> None:
    page.goto(live.ui("/ui/services/Booking/handlers/book"))
    page.get_by_label("Body (JSON)").fill('"browser-booking"')
    page.get_by_role("radio", name=re.compile("^Send")).check()
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("#reply .http-status")).to_have_text("202 Accepted")
    page.locator("#reply").get_by_role("link", name=re.compile("^inv_")).click()
    inv_url = page.url

    def failing() -> bool:
        page.goto(inv_url)
        return page.get_by_text("last failure here").count() == 1

    wait_until(failing, timeout=30, interval=0.3, what="the charge failing")
    expect(page.get_by_text("RuntimeError('the payment provider is down')")).to_be_visible()
    expect(page.locator(".step.failing")).to_contain_text("charge")
    seen(page, "retry-loop")
    page.get_by_role("link", name="Cancel", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile("^Cancel invocation"))).to_be_visible()
    seen(page, "confirm-cancel")
    page.get_by_role("button", name="Yes, cancel it").click()
    expect(page.get_by_role("status")).to_contain_text("Cancellation requested")

    def ended() -> bool:
        page.goto(inv_url)
        return page.get_by_text("completed: failure").count() == 1

    wait_until(ended, timeout=30, interval=0.3, what="the cancelled invocation completed")
    expect(page.get_by_text("[409] cancelled").first).to_be_visible()
    # The compensation ran: the journal ends with the undo step and the failure.
    expect(page.locator("ol.timeline")).to_contain_text("undo")
    page.get_by_role("link", name="Invocations", exact=True).click()
    page.get_by_label("Service").select_option("Booking")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("tbody tr").first).to_contain_text("completed: failure")
    seen(page, "invocations")


def test_edit_an_objects_state_and_read_it_back(live: Live, page: Page, http: httpx.Client) -> None:
    call(http, live, "Counter/browser-state/add", 5)
    page.goto(live.ui("/ui/state"))
    page.get_by_role("link", name="Counter").click()
    page.get_by_role("link", name="browser-state").click()
    expect(page.locator("tbody pre.payload")).to_have_text("5")
    page.get_by_label("Value").first.fill("99")
    seen(page, "state")
    page.get_by_role("button", name="Save state").click()
    expect(page.get_by_role("status")).to_contain_text("Change submitted")
    wait_until(
        lambda: call(http, live, "Counter/browser-state/get") == 99,
        timeout=10,
        what="the new count over the ingress",
    )
    page.reload()
    expect(page.locator("tbody pre.payload")).to_have_text("99")


def test_a_workflow_completes_when_its_signal_resolves_the_promise(
    live: Live, page: Page, http: httpx.Client
) -> None:
    page.goto(live.ui("/ui/services/SignupWorkflow/handlers/run"))
    page.get_by_label("Key", exact=True).fill("browser-wf")
    page.get_by_label("Body (JSON)").fill('"wf@example.com"')
    page.get_by_role("radio", name=re.compile("^Send")).check()
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("#reply .http-status")).to_have_text("202 Accepted")
    mail = mail_path(live.count_dir, "browser-wf")
    wait_until(mail.exists, timeout=30, what="the verification mail")

    page.goto(live.ui("/ui/workflows"))
    signup = page.get_by_role("region", name="SignupWorkflow")
    signup.get_by_label("Workflow key").fill("browser-wf")
    signup.get_by_role("button", name="Open").click()
    expect(page.get_by_role("heading", name="Workflow SignupWorkflow/browser-wf")).to_be_visible()
    promise = page.locator("tr.promise", has_text="email-link")

    def waiting() -> bool:
        page.reload()
        return promise.get_by_text("pending").count() == 1

    wait_until(waiting, timeout=30, interval=0.3, what="the run waiting on its promise")

    page.goto(live.ui("/ui/services/SignupWorkflow/handlers/click"))
    page.get_by_label("Key", exact=True).fill("browser-wf")
    page.get_by_label("Body (JSON)").fill(f'"{mail.read_text()}"')
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("#reply pre.payload")).to_have_text('"thanks"')

    page.goto(live.ui("/ui/workflows/SignupWorkflow/browser-wf"))

    def completed() -> bool:
        page.reload()
        return page.get_by_text("completed: success").count() == 1

    wait_until(completed, timeout=30, interval=0.3, what="the workflow completed")
    expect(promise.get_by_text("resolved")).to_be_visible()
    expect(promise.locator("pre.payload")).to_have_text(f'"{mail.read_text()}"')
    expect(page.locator("tbody pre.payload", has_text="verified")).to_be_visible()
    seen(page, "workflow")
    # The overview last, when the scenarios above have left invocations to count; its
    # counts follow new invocations without a reload.
    page.goto(live.ui())
    completed = page.locator("#counts li", has_text="completed").locator(".count")
    before = completed.inner_text()
    page.evaluate("window.stayed = true")
    call(http, live, "Counter/browser-overview/add", 1)
    expect(completed).not_to_have_text(before, timeout=8_000)
    assert page.evaluate("window.stayed === true")
    seen(page, "overview")
