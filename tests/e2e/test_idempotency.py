"""Idempotency end to end: duplicate idempotent calls and sends, attach and output by
idempotency key, lookup, a short idempotency retention, idempotent calls and attach from
inside a handler, terminal errors with metadata directly and through a chain of calls.

Services: examples/idempotency.py. Marker files count what really executed. Every
assertion here was checked against the official server 1.7.12 (see
docs/official-1.7.12-probe.md, item 4).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import Deployment, Server, wait_until

Http = httpx.Client
# RFC 3339 with milliseconds and a "+00:00" offset, as the official server writes it.
EXPIRES_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+00:00$")


@pytest.fixture
def server_options(e2e_target: str) -> dict[str, Any]:
    # The official server purges expired completions on a cleanup timer (1 h by default).
    if e2e_target == "official":
        return {"extra_env": {"RESTATE_WORKER__CLEANUP_INTERVAL": "1s"}}
    return {}


@pytest.fixture
def idem(deployment: Callable[..., Deployment]) -> Deployment:
    return deployment("idempotency")


def _lines(count_dir: Path, name: str) -> list[str]:
    try:
        return (count_dir / name).read_text().splitlines()
    except FileNotFoundError:
        return []


def _post(
    http: Http, server: Server, path: str, body: object, key: str | None = None
) -> httpx.Response:
    headers = {"idempotency-key": key} if key is not None else {}
    return http.post(f"{server.ingress_url}/{path}", json=body, headers=headers, timeout=30)


def _get(http: Http, server: Server, path: str) -> httpx.Response:
    return http.get(f"{server.ingress_url}/{path}", timeout=30)


def _expires_in(resp: httpx.Response) -> timedelta:
    """How far ahead of now the answer's idempotency-expires lies."""
    value = resp.headers["idempotency-expires"]
    assert EXPIRES_FORMAT.match(value), f"idempotency-expires {value!r}"
    return datetime.fromisoformat(value) - datetime.now(UTC)


def _assert_error(resp: httpx.Response, status: int, body: dict[str, Any], source: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["x-restate-error-source"] == source
    assert resp.json() == body


def test_concurrent_duplicate_calls_execute_once(
    server: Server, idem: Deployment, count_dir: Path
) -> None:
    def call(_: int) -> httpx.Response:
        return httpx.post(
            f"{server.ingress_url}/Idem/slow",
            json={"tag": "c1", "millis": 500},
            headers={"idempotency-key": "dup"},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(call, range(20)))
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]
    assert {a.text for a in answers} == {'{"tag": "c1", "runs": 1}'}
    assert len({a.headers["x-restate-id"] for a in answers}) == 1
    assert _lines(count_dir, "idem-c1.runs") == ["run"]


def test_a_repeated_call_answers_the_stored_result(
    server: Server, http: Http, idem: Deployment, count_dir: Path
) -> None:
    first = _post(http, server, "Idem/greet", "ann", key="g1")
    assert first.status_code == 200, first.text
    assert first.json() == "hello ann #1"
    assert "idempotency-expires" not in first.headers
    inv = first.headers["x-restate-id"]

    again = _post(http, server, "Idem/greet", "ann", key="g1")
    assert again.status_code == 200, again.text
    assert again.json() == "hello ann #1"
    assert again.headers["x-restate-id"] == inv
    # Completion time + the default retention of 1 day.
    assert timedelta(days=1) - timedelta(minutes=1) < _expires_in(again) <= timedelta(days=1)

    # The body is not part of the key: another body gets the first result.
    other = _post(http, server, "Idem/greet", "bob", key="g1")
    assert other.status_code == 200, other.text
    assert other.json() == "hello ann #1"
    assert other.headers["x-restate-id"] == inv
    assert other.headers["idempotency-expires"] == again.headers["idempotency-expires"]

    assert _lines(count_dir, "greet-ann.runs") == ["run"]
    assert _lines(count_dir, "greet-bob.runs") == []


def _lookup_slow(http: Http, server: Server, key: str) -> httpx.Response:
    """``POST /restate/lookup`` of ``Idem/slow`` with idempotency key ``key``."""
    lookup = http.post(
        f"{server.ingress_url}/restate/lookup",
        json={
            "target": "idempotentInvocation",
            "service": "Idem",
            "handler": "slow",
            "idempotencyKey": key,
        },
    )
    assert lookup.status_code == 200, lookup.text
    return lookup


def test_sends_with_a_key_are_accepted_once_and_attachable_by_key(
    server: Server, http: Http, idem: Deployment, count_dir: Path
) -> None:
    body = {"tag": "s1", "millis": 1000}
    sent = _post(http, server, "Idem/slow/send", body, key="s1")
    assert sent.status_code == 202, sent.text
    inv = sent.json()["invocationId"]
    assert sent.json() == {"invocationId": inv, "status": "Accepted"}
    assert sent.headers["x-restate-id"] == inv

    while_running = _post(http, server, "Idem/slow/send", body, key="s1")
    assert while_running.status_code == 202, while_running.text
    assert while_running.json() == {"invocationId": inv, "status": "PreviouslyAccepted"}
    assert while_running.headers["x-restate-id"] == inv

    attached = _get(http, server, "restate/invocation/Idem/slow/s1/attach")
    assert attached.status_code == 200, attached.text
    assert attached.json() == {"tag": "s1", "runs": 1}
    assert attached.headers["x-restate-id"] == inv

    after = _post(http, server, "Idem/slow/send", body, key="s1")
    assert after.status_code == 202, after.text
    assert after.json() == {"invocationId": inv, "status": "PreviouslyAccepted"}

    output = _get(http, server, "restate/invocation/Idem/slow/s1/output")
    assert output.status_code == 200, output.text
    assert output.json() == {"tag": "s1", "runs": 1}
    assert output.headers["x-restate-id"] == inv
    assert "idempotency-expires" in output.headers
    attached_after = _get(http, server, "restate/invocation/Idem/slow/s1/attach")
    assert attached_after.status_code == 200, attached_after.text
    assert attached_after.json() == {"tag": "s1", "runs": 1}
    assert attached_after.headers["x-restate-id"] == inv

    lookup = _lookup_slow(http, server, "s1")
    assert lookup.json() == {"invocationId": inv}
    assert _lines(count_dir, "idem-s1.runs") == ["run"]


def test_an_object_call_with_a_key_is_attachable_by_object_key_and_idempotency_key(
    server: Server, http: Http, idem: Deployment, count_dir: Path
) -> None:
    first = _post(http, server, "IdemObj/o1/add", 5, key="a1")
    assert (first.status_code, first.json()) == (200, 5), first.text
    inv = first.headers["x-restate-id"]
    again = _post(http, server, "IdemObj/o1/add", 5, key="a1")
    assert (again.status_code, again.json()) == (200, 5), again.text
    assert again.headers["x-restate-id"] == inv
    for suffix in ("attach", "output"):
        resp = _get(http, server, f"restate/invocation/IdemObj/o1/add/a1/{suffix}")
        assert (resp.status_code, resp.json()) == (200, 5), resp.text
        assert resp.headers["x-restate-id"] == inv
        assert "idempotency-expires" in resp.headers
    # The duplicate added nothing: one more (unkeyed) call makes 6, not 11.
    plain = _post(http, server, "IdemObj/o1/add", 1)
    assert (plain.status_code, plain.json()) == (200, 6), plain.text
    assert _lines(count_dir, "obj-o1.runs") == ["run", "run"]


def test_attach_and_output_by_an_unknown_key(server: Server, http: Http, idem: Deployment) -> None:
    attached = _get(http, server, "restate/invocation/Idem/slow/nokey/attach")
    _assert_error(
        attached, 404, {"code": 404, "message": "not found", "source": "invocation"}, "invocation"
    )
    # The id of an idempotent invocation follows from its target and key.
    lookup = _lookup_slow(http, server, "nokey")
    assert attached.headers["x-restate-id"] == lookup.json()["invocationId"]

    output = _get(http, server, "restate/invocation/Idem/slow/nokey/output")
    _assert_error(
        output,
        404,
        {"code": 404, "message": "invocation not found", "source": "ingress"},
        "ingress",
    )
    assert "x-restate-id" not in output.headers

    obj = _get(http, server, "restate/invocation/IdemObj/o9/add/nokey/attach")
    _assert_error(
        obj, 404, {"code": 404, "message": "not found", "source": "invocation"}, "invocation"
    )


def test_after_its_retention_the_same_key_executes_again(
    server: Server, http: Http, idem: Deployment, count_dir: Path
) -> None:
    first = _post(http, server, "ShortIdem/count", "t", key="k")
    assert (first.status_code, first.json()) == (200, 1), first.text
    assert "idempotency-expires" not in first.headers
    inv = first.headers["x-restate-id"]
    again = _post(http, server, "ShortIdem/count", "t", key="k")
    assert (again.status_code, again.json()) == (200, 1), again.text
    assert timedelta(0) < _expires_in(again) <= timedelta(seconds=2)

    # 2 s of retention, then whenever the server sweeps.
    wait_until(
        lambda: (
            _get(http, server, "restate/invocation/ShortIdem/count/k/output").status_code == 404
        ),
        timeout=20,
        interval=0.2,
        what="idempotent result purged",
    )
    fresh = _post(http, server, "ShortIdem/count", "t", key="k")
    assert (fresh.status_code, fresh.json()) == (200, 2), fresh.text
    assert "idempotency-expires" not in fresh.headers
    # Same target and key, so the same (deterministic) invocation id.
    assert fresh.headers["x-restate-id"] == inv
    assert _lines(count_dir, "short-t.runs") == ["run", "run"]


def test_idempotent_calls_from_a_handler_execute_once(
    server: Server, http: Http, idem: Deployment, count_dir: Path
) -> None:
    resp = _post(http, server, "IdemCaller/callTwice", {"name": "x", "key": "k1"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == ["hello x #1", "hello x #1"]
    # Handler calls and ingress calls share the (target, key) space.
    ingress = _post(http, server, "Idem/greet", "x", key="k1")
    assert (ingress.status_code, ingress.json()) == (200, "hello x #1"), ingress.text
    assert "idempotency-expires" in ingress.headers
    # A second caller invocation with the same key gets the stored result too.
    repeat = _post(http, server, "IdemCaller/callTwice", {"name": "x", "key": "k1"})
    assert repeat.status_code == 200, repeat.text
    assert repeat.json() == ["hello x #1", "hello x #1"]
    assert _lines(count_dir, "greet-x.runs") == ["run"]


def test_a_handler_attaches_to_an_invocation_by_id(
    server: Server, http: Http, idem: Deployment, count_dir: Path
) -> None:
    sent = _post(http, server, "Idem/slow/send", {"tag": "a1", "millis": 1500})
    assert sent.status_code == 202, sent.text
    inv = sent.json()["invocationId"]
    wait_until(lambda: _lines(count_dir, "idem-a1.runs"), timeout=20, what="target running")

    running = _post(http, server, "IdemCaller/attachTo", inv)
    assert running.status_code == 200, running.text
    assert running.json() == {"result": {"tag": "a1", "runs": 1}}
    completed = _post(http, server, "IdemCaller/attachTo", inv)
    assert completed.status_code == 200, completed.text
    assert completed.json() == {"result": {"tag": "a1", "runs": 1}}
    assert _lines(count_dir, "idem-a1.runs") == ["run"]

    # A well-formed id that nothing has used: the id of an idempotent call never made.
    lookup = http.post(
        f"{server.ingress_url}/restate/lookup",
        json={
            "target": "idempotentInvocation",
            "service": "Idem",
            "handler": "greet",
            "idempotencyKey": "never",
        },
    )
    assert lookup.status_code == 200, lookup.text
    unknown = _post(http, server, "IdemCaller/attachTo", lookup.json()["invocationId"])
    assert unknown.status_code == 200, unknown.text
    assert unknown.json() == {"error": {"code": 404, "message": "not found"}}


FAILURE = {"message": "bad thing", "code": 422, "metadata": {"k": "v"}}
FAILURE_BODY = {
    "code": 422,
    "message": "bad thing",
    "metadata": {"k": "v"},
    "source": "invocation",
}


def _assert_failure(resp: httpx.Response, body: dict[str, Any]) -> None:
    _assert_error(resp, 422, body, "invocation")
    assert resp.headers["x-restate-id"].startswith("inv_")
    assert list(resp.json()) == list(body), "field order"


def test_a_terminal_error_with_metadata_reaches_the_ingress(
    server: Server, http: Http, idem: Deployment
) -> None:
    _assert_failure(_post(http, server, "Failer/fail", FAILURE), FAILURE_BODY)
    # Without metadata there is no metadata field.
    plain = _post(http, server, "Failer/fail", {"message": "bad thing", "code": 422})
    _assert_failure(plain, {"code": 422, "message": "bad thing", "source": "invocation"})

    # The stored failure keeps its metadata for output and attach.
    sent = _post(http, server, "Failer/fail/send", FAILURE)
    assert sent.status_code == 202, sent.text
    inv = sent.json()["invocationId"]
    attached = _get(http, server, f"restate/invocation/{inv}/attach")
    _assert_failure(attached, FAILURE_BODY)
    output = _get(http, server, f"restate/invocation/{inv}/output")
    _assert_failure(output, FAILURE_BODY)
    assert output.headers["x-restate-id"] == inv
    assert "idempotency-expires" in output.headers


def test_a_terminal_error_with_metadata_propagates_through_a_call(
    server: Server, http: Http, idem: Deployment
) -> None:
    # Relay/callFail awaits Failer/fail and lets the TerminalError propagate.
    _assert_failure(_post(http, server, "Relay/callFail", FAILURE), FAILURE_BODY)
    # The calling handler sees code, message and metadata.
    caught = _post(http, server, "Relay/catchFail", FAILURE)
    assert caught.status_code == 200, caught.text
    assert caught.json() == {"code": 422, "message": "bad thing", "metadata": {"k": "v"}}
