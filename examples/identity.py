"""Services that accept requests only from the server holding one private key.

The SDK checks every request (discovery and invocations) against the public keys in
`identity_keys`: without a valid `x-restate-jwt-v1` token signed by one of them, it
answers 401. The key comes from PYRESTATE_E2E_IDENTITY_KEY (one or more
`publickeyv1_...` strings, comma-separated), as printed by
`pyrestate identity public-key --private-key-pem-file key.pem`.

For the tests, every request is also logged to `identity-requests.jsonl` in the
PYRESTATE_E2E_COUNT_DIR directory: its path, the SDK's answer status, the signature
scheme, and the token's `kid`, `aud` and `sub`, so a test can see which attempts were
rejected and which key had signed them.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from pathlib import Path
from typing import Any

import restate
from restate import Context, ObjectContext

IDENTITY_KEY_ENV = "PYRESTATE_E2E_IDENTITY_KEY"
COUNT_DIR_ENV = "PYRESTATE_E2E_COUNT_DIR"
REQUEST_LOG = "identity-requests.jsonl"

guarded = restate.Service("Guarded")


@guarded.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"Hello, {name}!"


guarded_counter = restate.VirtualObject("GuardedCounter")


@guarded_counter.handler()
async def add(ctx: ObjectContext, n: int) -> int:
    # A keyed call: the server's token also carries the key (the `sub` claim).
    value = (await ctx.get("count", type_hint=int) or 0) + n
    ctx.set("count", value)
    return value


def _identity_keys() -> list[str]:
    keys = [k.strip() for k in os.environ.get(IDENTITY_KEY_ENV, "").split(",") if k.strip()]
    if not keys:
        # Without keys the SDK would accept anything, which is not what this app is for.
        raise RuntimeError(f"set {IDENTITY_KEY_ENV} to the server's publickeyv1_... key")
    return keys


@functools.cache
def _sdk_app() -> Any:
    # Built on first use, so importing this module (tests read its constants) needs no key.
    return restate.app(services=[guarded, guarded_counter], identity_keys=_identity_keys())


def _token_parts(headers: dict[bytes, bytes]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JWT's header and claims, unverified: only for the record (the SDK verifies)."""
    token = headers.get(b"x-restate-jwt-v1")
    if token is None:
        return {}, {}
    try:
        decoded = [
            json.loads(base64.urlsafe_b64decode(seg + b"=" * (-len(seg) % 4)))
            for seg in token.split(b".")[:2]
        ]
        return decoded[0], decoded[1]
    except (ValueError, IndexError):
        return {"kid": "<malformed>"}, {}


def _log_request(record: dict[str, Any]) -> None:
    directory = Path(os.environ.get(COUNT_DIR_ENV) or "/tmp/pyrestate-e2e-counts")
    directory.mkdir(parents=True, exist_ok=True)
    # One O_APPEND write per line keeps records whole under concurrent requests.
    with open(directory / REQUEST_LOG, "a") as f:
        f.write(json.dumps(record) + "\n")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        await _sdk_app()(scope, receive, send)
        return
    headers = dict(scope["headers"])
    scheme = headers.get(b"x-restate-signature-scheme")
    jwt_header, claims = _token_parts(headers)
    record: dict[str, Any] = {
        "path": scope["path"],
        "http_version": scope.get("http_version"),
        "scheme": scheme.decode() if scheme is not None else None,
        "kid": jwt_header.get("kid"),
        "aud": claims.get("aud"),
        "sub": claims.get("sub"),
        "status": None,
    }

    async def recording_send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            record["status"] = message["status"]
            # Logged as soon as the SDK decides, not when a long invocation stream ends.
            _log_request(record)
        await send(message)

    await _sdk_app()(scope, receive, recording_send)
