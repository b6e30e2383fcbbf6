"""SIGKILL the server with invocations in flight; after a restart on the same data dir,
every accepted invocation completes exactly once and no stored ctx.run result re-executes.

The Worker object (examples/durability.py) writes per-invocation marker lines:
"start"/"end" around each real execution of its ctx.run body and "after" each time an
attempt gets past the run, which the SDK only does once the server has stored the run's
result. A run interrupted by the crash may legitimately execute again; a run whose result
was stored (an "after" exists) must never start again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
from harness import Deployment, Server, wait_until

SLOW = 20  # each on its own key, so all are in flight at once
FAST_KEYS = 5
FAST_PER_KEY = 6  # queued behind each other on their key


def markers(count_dir: Path, tag: str) -> list[str]:
    try:
        return (count_dir / f"work-{tag}.log").read_text().splitlines()
    except FileNotFoundError:
        return []


def test_sigkill_with_invocations_in_flight(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    count_dir: Path,
) -> None:
    deployment("durability")
    # key -> tags of the invocations sent to it, in order
    plan: dict[str, list[tuple[str, int]]] = {}
    for i in range(SLOW):
        # Staggered durations so that at the kill some runs are done and some mid-way.
        plan[f"slow-{i}"] = [(f"slow-{i}", 600 + 200 * i)]
    for j in range(FAST_KEYS):
        plan[f"fast-{j}"] = [(f"fast-{j}-{n}", 150) for n in range(FAST_PER_KEY)]
    slow_tags = [f"slow-{i}" for i in range(SLOW)]

    invocation_ids: dict[str, str] = {}
    for key, items in plan.items():
        for tag, millis in items:
            resp = http.post(
                f"{server.ingress_url}/Worker/{key}/work/send", json={"tag": tag, "millis": millis}
            )
            assert resp.status_code == 202, resp.text
            invocation_ids[tag] = resp.json()["invocationId"]
    assert len(invocation_ids) == SLOW + FAST_KEYS * FAST_PER_KEY == 50

    def mid_flight() -> bool:
        logs = [markers(count_dir, t) for t in slow_tags]
        finished = sum("after" in m for m in logs)
        running = sum("start" in m and "end" not in m for m in logs)
        return finished >= 3 and running >= 3

    wait_until(mid_flight, timeout=30, interval=0.02, what="some runs stored, some running")
    server.kill()
    before = {tag: markers(count_dir, tag) for tag in invocation_ids}
    stored_before = [t for t, m in before.items() if "after" in m]
    interrupted = [t for t, m in before.items() if "start" in m and "after" not in m]
    # The kill must have hit work in flight, or this test shows nothing about recovery.
    assert len(stored_before) >= 3 and len(interrupted) >= 3, (stored_before, interrupted)

    server.start()

    def status(key: str) -> dict:
        resp = http.get(f"{server.ingress_url}/Worker/{key}/status")
        assert resp.status_code == 200, resp.text
        return resp.json()

    def all_done() -> bool:
        return all(status(key)["count"] >= len(items) for key, items in plan.items())

    wait_until(all_done, timeout=120, interval=0.25, what="all invocations completed")

    # Every accepted invocation finished, according to the server too, with the output
    # its position in its key's queue gives (the handler returns the key's new count).
    for key, items in plan.items():
        for position, (tag, _) in enumerate(items, start=1):
            inv = invocation_ids[tag]
            resp = http.get(f"{server.ingress_url}/restate/invocation/{inv}/attach", timeout=60)
            assert resp.status_code == 200, f"{tag}: {resp.status_code} {resp.text}"
            assert resp.json() == position, (key, tag, resp.text)

    for key, items in plan.items():
        st = status(key)
        tags = [tag for tag, _ in items]
        # Exactly once per invocation: not lost, not doubled; a key's queue stays in order.
        assert st["count"] == len(items), (key, st)
        assert st["done"] == tags, (key, st)

    for tag in invocation_ids:
        log = markers(count_dir, tag)
        assert "after" in log, (tag, log)
        first_after = log.index("after")
        # Once the run's result was stored, the body never executed again.
        assert "start" not in log[first_after:], (tag, log)
        # One execution, or one interrupted by the single crash plus one after it.
        assert 1 <= log.count("start") <= 2, (tag, log)
        if tag in stored_before:
            assert log.count("start") == before[tag].count("start"), (tag, log)


INTAKE = 400
INTAKE_KEYS = 8


def test_sigkill_during_intake_loses_nothing_acknowledged(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    count_dir: Path,
) -> None:
    """Sends keep arriving while the server is killed. Every 202 must complete exactly
    once; a client that got no answer retries with its idempotency key after the
    restart and must neither lose nor double its invocation."""
    deployment("durability")
    answers: dict[str, int | str] = {}

    def key_of(tag: str) -> str:
        return f"intake-{int(tag.split('-')[1]) % INTAKE_KEYS}"

    def send(client: httpx.Client, tag: str) -> int:
        resp = client.post(
            f"{server.ingress_url}/Worker/{key_of(tag)}/work/send",
            json={"tag": tag, "millis": 0},
            headers={"idempotency-key": tag},
        )
        return resp.status_code

    def intake() -> None:
        with httpx.Client(timeout=5) as client:
            for i in range(INTAKE):
                tag = f"in-{i}"
                try:
                    answers[tag] = send(client, tag)
                except httpx.TransportError as e:
                    answers[tag] = type(e).__name__

    sender = threading.Thread(target=intake)
    sender.start()
    wait_until(lambda: len(answers) >= 40, timeout=30, interval=0.001, what="intake under way")
    server.kill()
    sender.join(60)
    accepted = [t for t, a in answers.items() if a == 202]
    assert 40 <= len(accepted) < INTAKE, "the kill must land in the middle of the intake"

    server.start()
    for tag, answer in answers.items():
        if answer != 202:
            assert send(http, tag) == 202, tag

    def status(key: str) -> dict:
        resp = http.get(f"{server.ingress_url}/Worker/{key}/status")
        assert resp.status_code == 200, resp.text
        return resp.json()

    per_key = INTAKE // INTAKE_KEYS
    wait_until(
        lambda: all(status(f"intake-{k}")["count"] >= per_key for k in range(INTAKE_KEYS)),
        timeout=120,
        interval=0.25,
        what="every sent invocation completed",
    )
    for k in range(INTAKE_KEYS):
        st = status(f"intake-{k}")
        expected = {f"in-{i}" for i in range(INTAKE) if i % INTAKE_KEYS == k}
        assert st["count"] == per_key and sorted(st["done"]) == sorted(expected), st
    for tag in answers:
        log = markers(count_dir, tag)
        assert "after" in log and "start" not in log[log.index("after") :], (tag, log)
        assert 1 <= log.count("start") <= 2, (tag, log)  # at most one run cut by the kill
