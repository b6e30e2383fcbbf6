"""Request identity end to end: an SDK service that trusts only one server's key.

`examples.identity` is configured (`identity_keys=[...]`) with the public key of the
server's private key. The server signs discovery and every invocation attempt with it,
so registration and calls work; restarted with another key, the same server is refused
(401) by the SDK, which must show up as failed, retried attempts carrying the
deployment's answer, not as a crash; back on the right key, the retried invocation
completes.

The server under test gets its key by the `--request-identity-private-key-pem-file`
flag or by the official variable RESTATE_REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE (the
only way for the official server, which these tests also run against).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from harness import REPO_ROOT, Deployment, Server, register, sql_rows, target, wait_until

from examples.identity import IDENTITY_KEY_ENV, REQUEST_LOG
from pyrestate.identity import PEM_FILE_ENV, public_key_from_pem

FLAG = "--request-identity-private-key-pem-file"


@dataclass
class Keys:
    server_pem: Path  # what the server is configured with; rewritten to switch keys
    good_pem: bytes
    other_pem: bytes
    good_public: str
    other_public: str


def _new_pem() -> bytes:
    # The format `openssl genpkey -algorithm ed25519` writes: PKCS#8, "BEGIN PRIVATE KEY".
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    directory = tmp_path / "keys"
    directory.mkdir()
    good, other = _new_pem(), _new_pem()
    publics = []
    for name, pem in (("good.pem", good), ("other.pem", other)):
        (directory / name).write_bytes(pem)
        publics.append(public_key_from_pem(directory / name))
    server_pem = directory / "server.pem"
    server_pem.write_bytes(good)
    return Keys(server_pem, good, other, publics[0], publics[1])


@pytest.fixture
def server_options(request: pytest.FixtureRequest, keys: Keys, e2e_target: str) -> dict[str, Any]:
    """Overrides the conftest fixture: the server starts with `keys.server_pem`."""
    callspec = getattr(request.node, "callspec", None)
    source = callspec.params.get("key_source", "env") if callspec else "env"
    if e2e_target == "pyrestate" and source == "flag":
        return {"extra_args": [FLAG, str(keys.server_pem)]}
    # The official server has no such flag; its variable works for both servers.
    return {"extra_env": {PEM_FILE_ENV: str(keys.server_pem)}}


def _requests(count_dir: Path) -> list[dict[str, Any]]:
    path = count_dir / REQUEST_LOG
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


CASES = [
    pytest.param(False, "flag", id="http2-flag"),
    pytest.param(True, "env", id="http1-env"),
]


@pytest.mark.parametrize(("http1", "key_source"), CASES)
@pytest.mark.own_process("signed requests guard the network between server and service")
def test_sdk_accepts_the_servers_key_and_rejects_another(
    server: Server,
    http: httpx.Client,
    deployment: Callable[..., Deployment],
    keys: Keys,
    count_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    http1: bool,
    key_source: str,
) -> None:
    monkeypatch.setenv(IDENTITY_KEY_ENV, keys.good_public)

    # Discovery with signing on: the fixture registers the deployment (asserts 201).
    dep = deployment("identity", http1=http1)
    assert {s["name"] for s in dep.registration["services"]} == {"Guarded", "GuardedCounter"}

    greet = http.post(f"{server.ingress_url}/Guarded/greet", json="Ada")
    assert greet.status_code == 200, greet.text
    assert greet.json() == "Hello, Ada!"
    # A keyed call: its token carries the object key too.
    key = quote("a key", safe="")
    added = http.post(f"{server.ingress_url}/GuardedCounter/{key}/add", json=2)
    assert added.status_code == 200, added.text
    assert added.json() == 2

    accepted = _requests(count_dir)
    assert {r["path"] for r in accepted} >= {
        "/discover",
        "/invoke/Guarded/greet",
        "/invoke/GuardedCounter/add",
    }
    # Every request the deployment got was signed (scheme v1) with the server's key, for
    # its path; keyed calls name their key (raw) as the token's subject.
    for r in accepted:
        assert (r["scheme"], r["kid"], r["status"]) == ("v1", keys.good_public, 200), r
        assert r["aud"] == r["path"], r
        assert r["sub"] == ("a key" if r["path"] == "/invoke/GuardedCounter/add" else None), r

    # The same server, on the same data, restarted with another key.
    keys.server_pem.write_bytes(keys.other_pem)
    server.restart()
    sent = http.post(f"{server.ingress_url}/Guarded/greet/send", json="Bob")
    assert sent.status_code == 202, sent.text
    inv = sent.json()["invocationId"]

    def rejected_attempts() -> list[dict[str, Any]]:
        new = _requests(count_dir)[len(accepted) :]
        attempts = [r for r in new if r["path"] == "/invoke/Guarded/greet"]
        return attempts if len(attempts) >= 2 else []

    # The SDK refuses each attempt, and the server tries again.
    attempts = wait_until(rejected_attempts, timeout=30, what="2 rejected attempts")
    for r in attempts:
        # Signed, but with the other key: the server used the key it was given.
        assert (r["scheme"], r["kid"], r["status"]) == ("v1", keys.other_public, 401), r

    # A refused attempt is an ordinary failed attempt: the server carries on.
    assert server.running
    assert http.get(f"{server.admin_url}/health").status_code == 200

    # The deployment's answer is the attempt's recorded failure, as the admin API shows it.
    def recorded() -> list[dict[str, Any]]:
        return sql_rows(
            http,
            server,
            f"SELECT status, retry_count, last_failure FROM sys_invocation WHERE id = '{inv}'",
        )

    (row,) = wait_until(
        lambda: [r for r in recorded() if "last_failure" in r] or None,
        timeout=30,
        what="the failure recorded",
    )
    assert row["retry_count"] >= 1, row
    assert "401" in row["last_failure"], row

    # Discovery is signed with the other key too, and refused the same way.
    again = register(http, server.admin_url, dep.url, http1=http1, force=True)
    assert again.status_code == 500, again.text
    assert "401" in again.text

    # Back on the right key, the retried invocation completes, with its own result.
    keys.server_pem.write_bytes(keys.good_pem)
    server.restart()
    attached = http.get(f"{server.ingress_url}/restate/invocation/{inv}/attach", timeout=60)
    assert attached.status_code == 200, attached.text
    assert attached.json() == "Hello, Bob!"
    last = [r for r in _requests(count_dir) if r["path"] == "/invoke/Guarded/greet"][-1]
    assert (last["kid"], last["status"]) == (keys.good_public, 200), last


def test_server_logs_its_public_key(server: Server, keys: Keys) -> None:
    # The official logs it at startup ("Loaded request identity key", kid: "publickeyv1_...")
    # in the format the SDKs take; it is the same string our encoder produces.
    assert keys.good_public in server.log_tail(2000)


@pytest.mark.skipif(target() == "official", reason="pyrestate's own CLI")
@pytest.mark.parametrize("source", ["flag", "env"])
def test_cli_prints_the_public_key(keys: Keys, source: str) -> None:
    argv = [sys.executable, "-m", "pyrestate", "identity", "public-key"]
    env = {k: v for k, v in os.environ.items() if k != PEM_FILE_ENV}
    if source == "flag":
        argv += ["--private-key-pem-file", str(keys.server_pem)]
    else:
        env[PEM_FILE_ENV] = str(keys.server_pem)
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == keys.good_public
