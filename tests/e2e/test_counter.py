"""Virtual object semantics under concurrency: one writer per key, shared reads don't wait."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

import httpx
import pytest
from harness import Deployment, Server

KEYS = 10
CALLS = 200


@pytest.mark.parametrize("http1", [False, True], ids=["http2-bidi", "http1-request-response"])
async def test_concurrent_adds_are_serialized_per_key(
    server: Server, deployment: Callable[..., Deployment], http1: bool
) -> None:
    deployment("counter", http1=http1)
    keys = [f"key-{i}" for i in range(KEYS)]
    limits = httpx.Limits(max_connections=CALLS, max_keepalive_connections=CALLS)
    timeout = httpx.Timeout(120.0, connect=30.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def add(key: str) -> tuple[str, int]:
            resp = await client.post(f"{server.ingress_url}/Counter/{key}/add", json=1)
            assert resp.status_code == 200, resp.text
            return key, resp.json()

        results = await asyncio.gather(*(add(keys[i % KEYS]) for i in range(CALLS)))

        returned: dict[str, list[int]] = collections.defaultdict(list)
        for key, value in results:
            returned[key].append(value)
        per_key = CALLS // KEYS
        for key in keys:
            # Each add saw exactly the adds before it: no lost update, no double apply.
            assert sorted(returned[key]) == list(range(1, per_key + 1)), key
            got = await client.get(f"{server.ingress_url}/Counter/{key}/get")
            assert got.status_code == 200, got.text
            assert got.json() == per_key, key


async def test_exclusive_calls_queue_and_shared_calls_do_not(
    server: Server, deployment: Callable[..., Deployment]
) -> None:
    deployment("counter")
    base = f"{server.ingress_url}/Counter/slow"
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0)) as client:
        # Accepted before the add below, so it holds the key's lock first.
        sent = await client.post(f"{base}/slowAdd/send", json={"n": 10, "millis": 4000})
        assert sent.status_code == 202, sent.text
        add = asyncio.create_task(client.post(f"{base}/add", json=1))
        # A shared read is not queued behind the 4 s exclusive call: it sees the old value.
        got = await client.get(f"{base}/get")
        assert got.status_code == 200, got.text
        assert got.json() == 0
        assert not add.done()
        # The exclusive add ran strictly after slowAdd finished.
        added = await add
        assert added.status_code == 200, added.text
        assert added.json() == 11
        final = await client.get(f"{base}/get")
        assert final.json() == 11
