"""Deployment fuzz: a registered fake deployment answers invocations with garbage.

The fake (fake_deployment.py) is registered twice: over HTTP/2 in bidi mode and over
HTTP/1.1 in request/response mode, each with a plain service and a virtual object. Each
case sends one invocation whose input names the case; the fake answers its attempts
with the case's plan. The server must reach the deployment for every case, must fail and
retry every attempt that cannot have ended cleanly, must not log a traceback, and after
every batch must still be alive and serving the Greeter.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

from fake_deployment import BIDI_PREFIX, RR_PREFIX, FakeDeployment, make_plan, manifest
from fuzzkit import Findings, Target, budget, case_rng, running_target, shorten

PART = "deployment"
SHARE = 0.45
BATCH = 20
# The fake's retry policy starts at 100 ms; this leaves room for a loaded machine.
FIRST_ATTEMPT_WAIT = 10.0
RETRY_WAIT = 10.0
SERVICES = {
    BIDI_PREFIX: ("FuzzBidi", "FuzzBidiObj"),
    RR_PREFIX: ("FuzzRR", "FuzzRRObj"),
}


def test_deployment_fuzz(tmp_path: Path, seed: int) -> None:
    findings = Findings(seed, PART)
    fake = FakeDeployment(tmp_path / "fake-deployment.log")
    fake.serve_manifest(BIDI_PREFIX, manifest("BIDI_STREAM", SERVICES[BIDI_PREFIX]))
    fake.serve_manifest(RR_PREFIX, manifest("REQUEST_RESPONSE", SERVICES[RR_PREFIX]))
    fake.start()
    try:
        with running_target(tmp_path, findings) as target:
            target.register(fake.h2_url + BIDI_PREFIX)
            target.register(fake.url + RR_PREFIX, http1=True)
            end = time.monotonic() + budget(SHARE)
            index = 0
            while time.monotonic() < end:
                _run_batch(target, fake, findings, seed, index)
                index += BATCH
    finally:
        fake.stop()
    assert not findings, findings.report()


def _run_batch(
    target: Target, fake: FakeDeployment, findings: Findings, seed: int, first: int
) -> None:
    labels: dict[int, str] = {}
    inv_ids: dict[int, str] = {}
    owners: dict[str, str] = {}  # invocation id -> case label, to attribute tracebacks
    retrying: list[int] = []
    for case in range(first, first + BATCH):
        rng = case_rng(seed, PART, case)
        plan = make_plan(case, rng)
        prefix = rng.choice((BIDI_PREFIX, RR_PREFIX))
        keyed = plan.keyed if plan.keyed is not None else rng.random() < 0.5
        service, obj = SERVICES[prefix]
        # A fresh key per case: a stuck invocation must not queue the next one behind it.
        path = (
            f"/{obj}/{quote(f'case-{case}-ключ/%', safe='')}/run/send"
            if keyed
            else f"/{service}/run/send"
        )
        label = f"case {case} via {prefix[1:]} {path}: {plan.label}"
        if plan.cuts:
            label += f" (in chunks cut at {list(plan.cuts)})"
        labels[case] = label
        fake.add_plan(case, plan)
        try:
            resp = target.http.post(target.server.ingress_url + path, json={"case": case})
        except Exception as e:  # any failure to accept is itself the finding
            findings.add(
                "send failed", f"{type(e).__name__} on a send to a fake service", label, repr(e)
            )
            continue
        if resp.status_code != 202:
            findings.add(
                "send refused",
                f"send to a fake service answered {resp.status_code}: {shorten(resp.text, 120)}",
                label,
                resp.text,
            )
            continue
        inv_ids[case] = resp.json()["invocationId"]
        owners[inv_ids[case]] = label
        if plan.expect_retry:
            retrying.append(case)
    deadline = time.monotonic() + FIRST_ATTEMPT_WAIT
    for case in labels:
        if not fake.wait_attempts(case, 1, max(0.0, deadline - time.monotonic())):
            findings.add(
                "hang", "an accepted invocation never reached the deployment", labels[case], ""
            )
    deadline = time.monotonic() + RETRY_WAIT
    for case in retrying:
        if fake.attempts(case) and not fake.wait_attempts(
            case, 2, max(0.0, deadline - time.monotonic())
        ):
            _no_retry(target, findings, inv_ids[case], labels[case])
    batch = f"batch of cases {first}..{first + BATCH - 1}:\n" + "\n".join(labels.values())
    target.observe(batch, owners)
    target.check(batch)


def _no_retry(target: Target, findings: Findings, inv_id: str, label: str) -> None:
    """An answer that cannot have ended the attempt cleanly got no retry: either the
    server took the garbage for a valid end, or the invocation is stuck."""
    resp = target.http.get(f"{target.server.ingress_url}/restate/invocation/{inv_id}/output")
    if resp.status_code == 470:  # "not completed yet", and no attempt is running
        findings.add("hang", "garbage answer neither failed nor retried", label, resp.text)
    else:
        findings.add(
            "garbage accepted",
            "an answer that is not a valid message sequence completed the invocation",
            label,
            f"invocation output: {resp.status_code} {resp.text}",
        )
