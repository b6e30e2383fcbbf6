"""Workflows end to end: the "Tour of Workflows" signup flow (examples/signup.py).

`run` executes once per workflow key; its shared handlers read state and resolve the
durable promise `run` waits on; the result is reachable by workflow name and key; a
promise outlives a crash of the server, and so does a workflow's durable sleep; with a
short retention the workflow's record, state and promises go, and the key runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import Deployment, Server, wait_until

from examples.signup import mail_path

Http = httpx.Client


def _lines(count_dir: Path, name: str) -> list[str]:
    path = count_dir / name
    return path.read_text().splitlines() if path.exists() else []


def _call(http: Http, server: Server, path: str, body: Any = None) -> httpx.Response:
    return http.post(f"{server.ingress_url}/{path}", json=body, timeout=60)


def _workflow(http: Http, server: Server, name: str, key: str, what: str) -> httpx.Response:
    return http.get(f"{server.ingress_url}/restate/workflow/{name}/{key}/{what}", timeout=60)


def _mail(count_dir: Path, user: str) -> str:
    path = mail_path(count_dir, user)
    wait_until(path.exists, timeout=30, what=f"verification mail to {user}")
    return path.read_text()


def _wait_waiting(http: Http, server: Server, workflow: str, user: str) -> None:
    """Until the run of ``user`` waits on its email-link promise."""
    wait_until(
        lambda: (
            _call(http, server, f"{workflow}/{user}/status").json() == "waiting for the email link"
        ),
        timeout=30,
        what=f"run of {user} waiting on the promise",
    )


@pytest.fixture
def signup(deployment: Callable[..., Deployment]) -> Deployment:
    return deployment("signup")


def test_signup_waits_for_the_email_link_and_runs_once(
    server: Server, http: Http, signup: Deployment, count_dir: Path
) -> None:
    sent = _call(http, server, "SignupWorkflow/ada/run/send", "ada@example.com")
    assert sent.status_code == 202, sent.text
    assert sent.json()["status"] == "Accepted"
    run_id = sent.json()["invocationId"]
    secret = _mail(count_dir, "ada")
    _wait_waiting(http, server, "SignupWorkflow", "ada")
    # Not done yet: output answers 470, and the link was not clicked.
    assert _workflow(http, server, "SignupWorkflow", "ada", "output").status_code == 470
    peek = _call(http, server, "SignupWorkflow/ada/peekLink")
    assert (peek.status_code, peek.content) == (200, b""), peek.text  # the SDK's None

    # run is invoked at most once per key: a send is told so, a call fails.
    again = _call(http, server, "SignupWorkflow/ada/run/send", "other@example.com")
    assert again.status_code == 202, again.text
    assert again.json() == {"invocationId": run_id, "status": "PreviouslyAccepted"}
    call = _call(http, server, "SignupWorkflow/ada/run", "other@example.com")
    assert call.status_code == 409, call.text
    assert call.json() == {
        "code": 409,
        "message": "the workflow method was already invoked",
        "source": "invocation",
    }
    assert call.headers["x-restate-id"] == run_id

    clicked = _call(http, server, "SignupWorkflow/ada/click", secret)
    assert (clicked.status_code, clicked.json()) == (200, "thanks"), clicked.text
    attached = _workflow(http, server, "SignupWorkflow", "ada", "attach")
    assert attached.status_code == 200, attached.text
    assert attached.json() == {"user": "ada", "verified": True}
    assert attached.headers["x-restate-id"] == run_id

    # Completed: state and the promise stay readable through the shared handlers.
    assert _call(http, server, "SignupWorkflow/ada/status").json() == "verified"
    assert _call(http, server, "SignupWorkflow/ada/peekLink").json() == secret
    output = _workflow(http, server, "SignupWorkflow", "ada", "output")
    assert output.status_code == 200 and output.json() == attached.json()
    assert "idempotency-expires" in output.headers  # read from the stored completion
    # A promise is completed once: a second click fails as the official answers.
    second = _call(http, server, "SignupWorkflow/ada/click", "forged")
    assert second.status_code == 409, second.text
    assert second.json()["message"] == "promise was already completed"
    after = _call(http, server, "SignupWorkflow/ada/run/send", "x@example.com")
    assert after.json()["status"] == "PreviouslyAccepted"
    assert _lines(count_dir, "created-ada.log") == ["ada@example.com"]

    lookup = http.post(
        f"{server.ingress_url}/restate/lookup",
        json={"target": "workflow", "workflowName": "SignupWorkflow", "workflowKey": "ada"},
    )
    assert lookup.status_code == 200 and lookup.json() == {"invocationId": run_id}, lookup.text
    by_body = http.post(
        f"{server.ingress_url}/restate/output",
        json={"target": "workflow", "workflowName": "SignupWorkflow", "workflowKey": "ada"},
    )
    assert by_body.status_code == 200 and by_body.json() == attached.json()


def test_an_unknown_workflow_key_is_not_found(
    server: Server, http: Http, signup: Deployment
) -> None:
    attach = _workflow(http, server, "SignupWorkflow", "nobody", "attach")
    assert attach.status_code == 404, attach.text
    assert attach.json() == {"code": 404, "message": "not found", "source": "invocation"}
    assert attach.headers["x-restate-id"].startswith("inv_1")
    output = _workflow(http, server, "SignupWorkflow", "nobody", "output")
    assert output.status_code == 404, output.text
    assert output.json() == {"code": 404, "message": "invocation not found", "source": "ingress"}


def test_a_link_clicked_before_run_waits_does_not_block_it(
    server: Server, http: Http, signup: Deployment, count_dir: Path
) -> None:
    early = _call(http, server, "SignupWorkflow/bea/click", "guess")
    assert (early.status_code, early.json()) == (200, "thanks"), early.text
    result = _call(http, server, "SignupWorkflow/bea/run", "bea@example.com")
    assert result.status_code == 200, result.text
    # It did not wait: the promise already held the (wrong) secret.
    assert result.json() == {"user": "bea", "verified": False}


def test_a_waiting_run_survives_sigkill_and_completes_on_click(
    server: Server, http: Http, signup: Deployment, count_dir: Path
) -> None:
    sent = _call(http, server, "SignupWorkflow/cy/run/send", "cy@example.com")
    assert sent.status_code == 202, sent.text
    secret = _mail(count_dir, "cy")
    _wait_waiting(http, server, "SignupWorkflow", "cy")
    server.kill()
    server.start()
    assert _call(http, server, "SignupWorkflow/cy/status").json() == "waiting for the email link"
    assert _workflow(http, server, "SignupWorkflow", "cy", "output").status_code == 470
    assert _call(http, server, "SignupWorkflow/cy/click", secret).status_code == 200
    attached = _workflow(http, server, "SignupWorkflow", "cy", "attach")
    assert attached.status_code == 200, attached.text
    assert attached.json() == {"user": "cy", "verified": True}
    assert _lines(count_dir, "created-cy.log") == ["cy@example.com"]


def test_cancelling_a_waiting_run_runs_its_compensation_and_keeps_its_promise(
    server: Server, http: Http, signup: Deployment, count_dir: Path
) -> None:
    run_id = _call(http, server, "SignupWorkflow/eve/run/send", "eve@example.com").json()[
        "invocationId"
    ]
    _mail(count_dir, "eve")
    _wait_waiting(http, server, "SignupWorkflow", "eve")
    cancel = http.patch(f"{server.admin_url}/invocations/{run_id}/cancel")
    assert cancel.status_code == 202, cancel.text
    attached = _workflow(http, server, "SignupWorkflow", "eve", "attach")
    assert (attached.status_code, attached.json()["message"]) == (409, "cancelled")
    assert _call(http, server, "SignupWorkflow/eve/status").json() == "abandoned"
    # The promise was never completed, and still is not.
    assert _call(http, server, "SignupWorkflow/eve/peekLink").content == b""


def test_a_sleeping_workflow_wakes_after_a_restart(
    server: Server, http: Http, signup: Deployment, count_dir: Path
) -> None:
    sent = _call(http, server, "Reminder/r1/run/send", 3000)
    assert sent.status_code == 202, sent.text
    wait_until(
        lambda: _call(http, server, "Reminder/r1/status").json() == "sleeping",
        timeout=30,
        what="workflow sleeping",
    )
    server.kill()
    server.start()
    attached = _workflow(http, server, "Reminder", "r1", "attach")
    assert (attached.status_code, attached.json()) == (200, "reminded r1"), attached.text
    assert _lines(count_dir, "rang-r1.log") == ["ring"]
    assert _call(http, server, "Reminder/r1/status").json() == "rang"


@pytest.fixture
def server_options(e2e_target: str) -> dict[str, Any]:
    # The official server purges completed workflows on a cleanup timer (1 h by default).
    if e2e_target == "official":
        return {"extra_env": {"RESTATE_WORKER__CLEANUP_INTERVAL": "1s"}}
    return {}


def test_after_its_retention_a_workflow_is_gone_and_runs_again(
    server: Server, http: Http, signup: Deployment, count_dir: Path
) -> None:
    sent = _call(http, server, "ShortSignup/dan/run/send", "dan@example.com")
    assert sent.status_code == 202, sent.text
    secret = _mail(count_dir, "dan")
    assert _call(http, server, "ShortSignup/dan/click", secret).status_code == 200
    done = _workflow(http, server, "ShortSignup", "dan", "attach")
    assert done.json() == {"user": "dan", "verified": True}
    assert _call(http, server, "ShortSignup/dan/status").json() == "verified"
    # 2 s of retention, then whenever the server sweeps.
    wait_until(
        lambda: _workflow(http, server, "ShortSignup", "dan", "output").status_code == 404,
        timeout=30,
        what="workflow purged",
    )
    # Its state and promise went with it.
    assert _call(http, server, "ShortSignup/dan/status").json() == "unknown"
    assert _call(http, server, "ShortSignup/dan/peekLink").content == b""
    again = _call(http, server, "ShortSignup/dan/run/send", "dan@example.org")
    assert again.json()["status"] == "Accepted", again.text
    # The same id again, so the same seed: the new run mails the same secret.
    wait_until(
        lambda: (
            len(_lines(count_dir, "created-dan.log")) == 2
            and _call(http, server, "ShortSignup/dan/status").json() == "waiting for the email link"
        ),
        timeout=30,
        what="the second run waiting on a fresh promise",
    )
    assert _call(http, server, "ShortSignup/dan/click", secret).status_code == 200
    rerun = _workflow(http, server, "ShortSignup", "dan", "attach")
    assert rerun.json() == {"user": "dan", "verified": True}
    assert _lines(count_dir, "created-dan.log") == ["dan@example.com", "dan@example.org"]
