"""An operator replaces a virtual object's state: ``POST /services/{name}/state``.

The answer is 202 once the change is committed; it is applied when the key is free, and
dropped if its ``version`` (of the state it was computed from) no longer matches. Against
the official server these assertions hold too.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import httpx
from harness import Deployment, Server, wait_until


def _version(state: dict[bytes, bytes]) -> str:
    """The official state version, computed here independently of the server's code."""
    digest = hashlib.sha256()
    for i, (name, value) in enumerate(sorted(state.items())):
        digest.update(i.to_bytes(8, "big") + b"\x01" + name + b"\x02" + value + b"\x03")
    return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def _count(http: httpx.Client, server: Server, key: str) -> int:
    return http.get(f"{server.ingress_url}/Counter/{key}/get").json()


def _replace(http: httpx.Client, server: Server, body: object) -> httpx.Response:
    return http.post(f"{server.admin_url}/services/Counter/state", json=body)


def test_an_operator_replaces_an_objects_state(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("counter")
    assert http.post(f"{server.ingress_url}/Counter/k1/add", json=5).json() == 5
    # The state as the object stores it: the SDK's JSON of the count.
    set99 = {"object_key": "k1", "new_state": {"count": list(b"99")}}
    resp = _replace(http, server, set99)
    assert (resp.status_code, resp.content) == (202, b""), resp.text
    wait_until(lambda: _count(http, server, "k1") == 99, timeout=10, what="state replaced")
    # Computed from a state that is no longer there: dropped.
    stale = {**set99, "new_state": {"count": list(b"1")}, "version": _version({b"count": b"5"})}
    assert _replace(http, server, stale).status_code == 202
    current = {**stale, "version": _version({b"count": b"99"}), "new_state": {}}
    assert _replace(http, server, current).status_code == 202
    # Cleared (the version matched), which the stale mutation, had it applied, would not.
    wait_until(lambda: _count(http, server, "k1") == 0, timeout=10, what="state cleared")
    assert http.post(f"{server.ingress_url}/Counter/k1/add", json=1).json() == 1


def test_state_requests_that_cannot_apply_are_refused(
    server: Server, http: httpx.Client, deployment: Callable[..., Deployment]
) -> None:
    deployment("counter")
    deployment("durability")  # Flaky: a plain service, without state
    flaky = http.post(
        f"{server.admin_url}/services/Flaky/state", json={"object_key": "k", "new_state": {}}
    )
    assert flaky.status_code == 400, flaky.text
    assert flaky.json()["message"] == "Cannot modify state for service type Service"
    unknown = http.post(
        f"{server.admin_url}/services/Nope/state",
        json={"object_key": "k", "new_state": {"a": [1]}},
    )
    assert unknown.status_code == 404, unknown.text
    missing = _replace(http, server, {"new_state": {}})
    assert missing.status_code == 422 and "object_key" in missing.text
