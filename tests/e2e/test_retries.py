"""Retryable failures: the invocation is retried and stored ctx.run results are replayed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from harness import Deployment, Server


@pytest.mark.parametrize("http1", [False, True], ids=["http2-bidi", "http1-request-response"])
def test_retried_until_success_and_run_executes_once(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    count_dir: Path,
    http1: bool,
) -> None:
    deployment("durability", http1=http1)
    key = "h1" if http1 else "h2"
    # The ingress keeps the request open across the retries and answers with the success.
    resp = http.post(f"{server.ingress_url}/Flaky/run", json=key, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"effect": f"effect-{key}", "attempt": 3}
    # Three attempts reached the failure point (two failed, the third succeeded)...
    assert (count_dir / f"flaky-{key}.attempts").read_text().splitlines() == ["attempt"] * 3
    # ...but the side effect before it ran only once: later attempts replayed its result.
    assert (count_dir / f"flaky-{key}.run").read_text().splitlines() == ["run"]


def test_a_run_gets_its_whole_retry_budget_after_earlier_retries(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    count_dir: Path,
) -> None:
    """The retry count sent to the SDK restarts when a command is stored (as the official
    server does): a run's max_attempts counts its own attempts, not the invocation's."""
    deployment("durability")
    resp = http.post(f"{server.ingress_url}/Budget/two_runs", json="b1", timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json().startswith("second gave up"), resp.text
    assert (count_dir / "budget-b1.first").read_text().splitlines() == ["run"] * 3
    assert (count_dir / "budget-b1.second").read_text().splitlines() == ["run"] * 3
