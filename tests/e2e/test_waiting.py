"""Waiting, durably: timers, one-way and delayed messages, awakeables, calls between services.

The services are in examples/waiting.py. Most tests run over both an HTTP/2 deployment
(bidi streaming: the server may keep the stream open while the handler waits) and an
HTTP/1.1 one (request/response: every wait on something not yet completed suspends the
invocation, and the server must re-invoke it with the completion in the replayed journal).
"""

from __future__ import annotations

import json
import re
import time
from calendar import timegm
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import Deployment, Server, wait_until

# Generous for calls that should take a second or two, but short enough that a server
# which never answers fails the test quickly.
CALL_TIMEOUT = 20.0


@pytest.fixture
def waiting(request: pytest.FixtureRequest, deployment: Callable[..., Deployment]) -> None:
    """examples/waiting.py, deployed over HTTP/2 unless the test is parametrized with
    ``both_transports`` (``request.param``: over HTTP/1.1)."""
    deployment("waiting", http1=getattr(request, "param", False))


# Every test here runs against the waiting services.
pytestmark = pytest.mark.usefixtures("waiting")

both_transports = pytest.mark.parametrize(
    "waiting", [False, True], ids=["http2-bidi", "http1-request-response"], indirect=True
)

# A Payment/pay call under way, and the id of the awakeable it waits on.
Payment = tuple[Future[httpx.Response], str]


@pytest.fixture
def pay(server: Server, count_dir: Path) -> Iterator[Callable[..., Payment]]:
    """Starts a Payment/pay call on a background thread (it blocks on its awakeable while
    the test acts): ``pay(tag, **args)`` returns the call and the awakeable id it published.
    """
    pool = ThreadPoolExecutor(max_workers=4)

    def start(tag: str, **args: Any) -> Payment:
        call = pool.submit(post, server, "Payment/pay", {"tag": tag, **args})
        path = count_dir / f"awakeable-{tag}.id"
        wait_until(lambda: path.exists() or call.done(), timeout=15, what=f"awakeable id of {tag}")
        if not path.exists():
            resp = call.result()
            pytest.fail(
                f"pay returned before publishing its awakeable: {resp.status_code} {resp.text}"
            )
        return call, path.read_text()

    try:
        yield start
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def post(
    server: Server, path: str, body: Any = None, *, timeout: float = CALL_TIMEOUT
) -> httpx.Response:
    # A fresh client per call: these also run on background threads.
    kwargs: dict[str, Any] = {} if body is None else {"json": body}
    return httpx.post(f"{server.ingress_url}/{path}", timeout=timeout, **kwargs)


def ok(resp: httpx.Response, status: int = 200) -> Any:
    assert resp.status_code == status, f"{resp.request.url}: {resp.status_code} {resp.text}"
    return resp.json() if resp.content else None


def lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(?:Z|\+00:?00)$")


def parse_utc(text: str) -> float:
    """An RFC 3339 UTC timestamp as Unix seconds (nanosecond fractions allowed)."""
    m = _ISO.match(text)
    assert m, f"not an RFC 3339 UTC timestamp: {text!r}"
    whole = timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return whole + float(f"0.{m.group(2) or 0}")


def output(server: Server, invocation_id: str) -> httpx.Response:
    return httpx.get(
        f"{server.ingress_url}/restate/invocation/{invocation_id}/output", timeout=CALL_TIMEOUT
    )


def attach(server: Server, invocation_id: str) -> httpx.Response:
    return httpx.get(
        f"{server.ingress_url}/restate/invocation/{invocation_id}/attach", timeout=CALL_TIMEOUT
    )


def resolve(server: Server, awakeable_id: str, value: Any) -> httpx.Response:
    return httpx.post(f"{server.ingress_url}/restate/awakeables/{awakeable_id}/resolve", json=value)


# --- Durable timers


@both_transports
def test_sleep_completes_after_its_duration(server: Server, count_dir: Path) -> None:
    t0 = time.time()
    result = ok(post(server, "Timers/nap", {"tag": "n", "millis": 2000}))
    elapsed = time.time() - t0
    assert elapsed >= 2.0, elapsed
    # The handler's own journaled clock agrees (a tiny slack for ms rounding of the
    # wake-up time the SDK computes).
    assert result["woke"] - result["started"] >= 1.99, result
    # Replays may repeat "armed" (written outside a run); the step after the sleep ran once.
    log = lines(count_dir / "nap-n.log")
    assert log.count("woke") == 1 and log.index("armed") < log.index("woke"), log


@both_transports
def test_sleep_survives_a_server_crash(server: Server, count_dir: Path) -> None:
    t0 = time.time()
    inv = ok(post(server, "Timers/nap/send", {"tag": "c", "millis": 2000}), 202)["invocationId"]
    log = count_dir / "nap-c.log"
    # "armed" is written only after the server acknowledged a run journaled after the
    # sleep, so the timer is stored when we crash the server.
    wait_until(lambda: "armed" in lines(log), timeout=15, what="sleep armed")
    assert "woke" not in lines(log), "the sleep ended before the crash; test inconclusive"
    server.kill()
    server.start()
    resp = attach(server, inv)
    elapsed = time.time() - t0
    result = ok(resp)
    assert result["tag"] == "c"
    assert elapsed >= 2.0, elapsed
    assert result["woke"] - result["started"] >= 1.99, result
    assert lines(log).count("woke") == 1, lines(log)


# --- One-way and delayed messages through the ingress


def test_delayed_send_is_scheduled_and_does_not_hold_the_key(server: Server) -> None:
    t0 = time.time()
    resp = post(server, "Mailbox/k/deliver/send?delay=2s", "delayed")
    accepted = ok(resp, 202)
    assert time.time() - t0 < 1.5, "a delayed send must be answered at once"
    assert accepted["status"] == "Accepted", accepted
    inv = accepted["invocationId"]
    assert inv.startswith("inv_"), accepted
    assert resp.headers.get("x-restate-id") == inv, resp.headers
    # The scheduled execution time is about two seconds from now.
    execution_time = parse_utc(accepted["executionTime"])
    assert t0 + 1.5 <= execution_time <= time.time() + 2.5, (t0, accepted)

    # Scheduled, not run: the output is not there yet (470, "not completed").
    pending = output(server, inv)
    assert pending.status_code == 470, f"{pending.status_code} {pending.text}"

    # The scheduled invocation does not lock the key: an exclusive call runs now.
    direct = ok(post(server, "Mailbox/k/deliver", "direct"))
    assert direct == ["direct"], "the delayed message ran too early"
    assert time.time() - t0 < 2.0, "an exclusive call waited for the delayed one"

    result = ok(attach(server, inv))
    assert result == ["direct", "delayed"]
    assert time.time() - t0 >= 2.0
    inbox = ok(post(server, "Mailbox/k/messages"))
    assert inbox[1]["msg"] == "delayed"
    assert inbox[1]["at"] >= t0 + 2.0 - 0.01, (t0, inbox)
    assert ok(output(server, inv)) == ["direct", "delayed"]


def test_delayed_send_survives_a_server_crash(server: Server) -> None:
    t0 = time.time()
    inv = ok(post(server, "Mailbox/d/deliver/send?delay=2s", "delayed"), 202)["invocationId"]
    # Accepted means stored: the schedule must outlive a crash right after the answer.
    server.kill()
    server.start()
    assert ok(attach(server, inv)) == ["delayed"]
    inbox = ok(post(server, "Mailbox/d/messages"))
    assert len(inbox) == 1, inbox
    assert inbox[0]["at"] >= t0 + 2.0 - 0.01, (t0, inbox)


def test_one_way_sends_to_one_key_run_in_order_exactly_once(
    server: Server, http: httpx.Client
) -> None:
    n = 1000
    ids = set()
    # Sequentially from one client: each send is accepted before the next is made, so
    # acceptance order, and therefore execution order on the key, is 0..n-1.
    for i in range(n):
        resp = http.post(f"{server.ingress_url}/Sequencer/seq/append/send", json=i)
        assert resp.status_code == 202, f"send {i}: {resp.status_code} {resp.text}"
        ids.add(resp.json()["invocationId"])
    assert len(ids) == n

    def seen() -> list:
        return ok(http.post(f"{server.ingress_url}/Sequencer/seq/seen"))

    wait_until(lambda: len(seen()) >= n, timeout=60, interval=0.2, what=f"{n} sends executed")
    got = seen()
    assert len(got) == n, f"{len(got)} executions for {n} sends"
    assert got == list(range(n)), [(i, v) for i, v in enumerate(got) if i != v][:10]


# --- Calls and one-way sends between services


@pytest.mark.calls
@both_transports
def test_fan_out_fan_in_with_invocation_ids(server: Server) -> None:
    result = ok(post(server, "Caller/fanOut", 10))
    assert result["results"] == [i * i for i in range(10)]
    ids = result["ids"]
    assert len(set(ids)) == 10 and all(i.startswith("inv_") for i in ids), ids
    # The ids the callee invocations got are real: each one's output is its result.
    for i, inv in enumerate(ids):
        assert ok(output(server, inv)) == i * i, inv


@pytest.mark.calls
@both_transports
def test_one_way_and_delayed_sends_from_a_handler(server: Server) -> None:
    t0 = time.time()
    sent = ok(post(server, "Caller/sendAll", {"key": "m", "delayMs": 1000}))
    # The sender does not wait for its messages to run, not even the delayed one.
    assert time.time() - t0 < 1.0, "sendAll waited for the delayed message"
    ids = [sent[k] for k in ("now", "later", "generic", "square")]
    assert len(set(ids)) == 4 and all(i.startswith("inv_") for i in ids), sent

    def inbox() -> list:
        return ok(post(server, "Mailbox/m/messages"))

    wait_until(lambda: len(inbox()) >= 3, timeout=15, what="three messages delivered")
    got = inbox()
    # Messages from one invocation to one key arrive in the order they were sent,
    # except that the delayed one waits its turn in time.
    assert [m["msg"] for m in got] == ["now", "generic", "later"], got
    assert got[2]["at"] >= t0 + 1.0, (t0, got)
    assert ok(output(server, sent["square"])) == 49
    assert ok(output(server, sent["now"])) == ["now"]
    assert ok(output(server, sent["generic"])) == ["now", "generic"]
    assert ok(output(server, sent["later"])) == ["now", "generic", "later"]
    # Untyped call API, reading the same key.
    assert ok(post(server, "Caller/genericCall", "m")) == ["now", "generic", "later"]


@pytest.mark.calls
@both_transports
def test_call_to_an_object_queues_behind_the_running_invocation(server: Server) -> None:
    ok(post(server, "Mailbox/q/hold/send", 1500), 202)
    t0 = time.time()
    result = ok(post(server, "Caller/callObject", {"key": "q", "msg": "x"}))
    # The call waited for the lock: "held" came first, and it took most of the 1.5 s.
    assert result["inbox"] == ["held", "x"], result
    assert time.time() - t0 >= 1.2
    assert ok(output(server, result["id"])) == ["held", "x"]


# --- Awakeables


@both_transports
def test_awakeable_resolved_through_the_ingress(
    server: Server, count_dir: Path, pay: Callable[..., Payment]
) -> None:
    call, aid = pay("ok")
    assert not call.done(), "pay finished without its callback"
    payload = {"status": "paid", "amount": 42}
    resp = resolve(server, aid, payload)
    assert resp.status_code == 202, f"{resp.status_code} {resp.text}"
    assert ok(call.result()) == {"tag": "ok", "confirmation": payload}
    # Resolving again after the fact is accepted and changes nothing.
    again = resolve(server, aid, {"late": 1})
    assert again.status_code == 202, f"{again.status_code} {again.text}"
    assert lines(count_dir / "pay-ok.log") == ["resumed"]


@both_transports
def test_awakeable_rejected_through_the_ingress(
    server: Server, count_dir: Path, pay: Callable[..., Payment]
) -> None:
    call, aid = pay("no")
    resp = httpx.post(
        f"{server.ingress_url}/restate/awakeables/{aid}/reject",
        content=b"card declined",
        headers={"content-type": "text/plain"},
    )
    assert resp.status_code == 202, f"{resp.status_code} {resp.text}"
    failed = call.result()
    # The rejection is a terminal error: the handler's await raised it, nothing retried.
    assert failed.status_code == 500, f"{failed.status_code} {failed.text}"
    assert failed.json()["message"] == "card declined", failed.text
    assert lines(count_dir / "pay-no.log") == []


@both_transports
def test_awakeable_resolved_before_it_is_awaited_and_only_once(
    server: Server, count_dir: Path, pay: Callable[..., Payment]
) -> None:
    # The handler sleeps a second between publishing the id and awaiting it.
    call, aid = pay("early", delayMs=1000)
    published = time.time()
    first = resolve(server, aid, {"n": 1})
    second = resolve(server, aid, {"n": 2})
    assert time.time() - published < 0.9, "resolutions too slow to precede the await"
    assert (first.status_code, second.status_code) == (202, 202), (first.text, second.text)
    assert ok(call.result()) == {"tag": "early", "confirmation": {"n": 1}}
    assert lines(count_dir / "pay-early.log") == ["resumed"]


@both_transports
def test_awakeable_survives_a_server_crash(server: Server, count_dir: Path) -> None:
    inv = ok(post(server, "Payment/pay/send", {"tag": "crash"}), 202)["invocationId"]
    path = count_dir / "awakeable-crash.id"
    wait_until(path.exists, timeout=15, what="awakeable id published")
    aid = path.read_text()
    # Over HTTP/1.1 the invocation is suspended by now; over HTTP/2 its stream is open.
    server.kill()
    server.start()
    resp = resolve(server, aid, "late")
    assert resp.status_code == 202, f"{resp.status_code} {resp.text}"
    assert ok(attach(server, inv)) == {"tag": "crash", "confirmation": "late"}
    assert lines(count_dir / "pay-crash.log") == ["resumed"]


@pytest.mark.calls
@both_transports
def test_awakeable_completed_by_another_handler(
    server: Server, count_dir: Path, pay: Callable[..., Payment]
) -> None:
    paid, aid = pay("a")
    ok(post(server, "Payment/confirm", {"id": aid, "value": "yes"}))
    assert ok(paid.result()) == {"tag": "a", "confirmation": "yes"}

    declined, aid = pay("b")
    ok(post(server, "Payment/decline", {"id": aid, "reason": "insufficient funds", "code": 402}))
    failed = declined.result()
    # The failure code chosen by the rejecting handler reaches the client.
    assert failed.status_code == 402, f"{failed.status_code} {failed.text}"
    assert failed.json()["message"] == "insufficient funds", failed.text


@pytest.mark.calls
@both_transports
def test_select_picks_the_awakeable_before_the_timeout(server: Server) -> None:
    t0 = time.time()
    # A delayed one-way call from the handler itself resolves the awakeable at ~100 ms.
    result = ok(post(server, "Race/signalOrTimeout", {"timeoutMs": 1000, "resolveAfterMs": 100}))
    assert result == {"winner": "signal", "value": "signalled"}
    assert time.time() - t0 < 1.0


@both_transports
def test_select_picks_the_timeout_when_nobody_resolves(server: Server) -> None:
    t0 = time.time()
    result = ok(post(server, "Race/signalOrTimeout", {"timeoutMs": 1000}))
    assert result == {"winner": "timeout", "value": None}
    assert time.time() - t0 >= 1.0


# --- Saga and determinism


@both_transports
def test_saga_runs_compensations_in_reverse_on_terminal_error(
    server: Server, count_dir: Path
) -> None:
    steps = ["flight", "car", "hotel", "payment"]
    resp = post(server, "Saga/book", {"tag": "trip", "steps": steps, "failAt": "payment"})
    assert resp.status_code == 402, f"{resp.status_code} {resp.text}"
    assert resp.json()["message"] == "payment declined", resp.text
    assert lines(count_dir / "saga-trip.log") == [
        "do flight",
        "do car",
        "do hotel",
        "do payment",
        "undo hotel",
        "undo car",
        "undo flight",
    ]


@both_transports
def test_random_is_the_same_across_a_retry(server: Server, count_dir: Path) -> None:
    result = ok(post(server, "Dice/roll", "d"))
    attempts = lines(count_dir / "dice-d.log")
    # Two attempts got past the run; the second one drew what the first one drew.
    assert len(attempts) == 2, attempts
    assert attempts[0] == attempts[1], attempts
    assert result["stored"] == [result["draw"], result["token"]], result
    assert json.loads(attempts[0]) == result["stored"], (attempts, result)
