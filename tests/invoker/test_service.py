"""Partition + invoker against a real SDK deployment, without the HTTP front doors."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from pyrestate.core.commands import Invoke
from pyrestate.core.ids import new_invocation_id
from pyrestate.core.model import HandlerType, Output, ServiceType, Target
from pyrestate.invoker.service import DeploymentInfo, Invoker, ServiceConfig
from pyrestate.partition.processor import PartitionProcessor
from pyrestate.storage.sqlite import SqlitePartitionStore

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def counter_deployment() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "examples.counter:app", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # hypercorn's worker is a child: stop the whole group
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(
                    f"http://127.0.0.1:{port}/discover",
                    headers={"accept": "application/vnd.restate.endpointmanifest.v3+json"},
                )
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class FixedSchemas:
    def __init__(self, uri: str, bidi: bool) -> None:
        http_version = "HTTP/2.0" if bidi else "HTTP/1.1"
        self.dep = DeploymentInfo("dp_test", uri, http_version, bidi, 6)

    def target(self, service: str, handler: str, key: str | None) -> Target:
        raise LookupError("no calls in this test")

    def service_config(self, service: str, handler: str) -> ServiceConfig:
        return ServiceConfig()

    def deployment_for(self, service: str, pinned: str | None) -> DeploymentInfo:
        return self.dep


@pytest.fixture
async def partition(tmp_path: Path, counter_deployment: str) -> AsyncIterator[PartitionProcessor]:
    store = SqlitePartitionStore(tmp_path / "p.db")
    processor = PartitionProcessor(store)
    invoker = Invoker(processor, store, FixedSchemas(counter_deployment, bidi=True))
    processor.invoker = invoker
    await processor.start()
    yield processor
    await invoker.aclose()
    await processor.stop()
    store.close()


ADD = Target("Counter", "add", "k", ServiceType.VIRTUAL_OBJECT, HandlerType.EXCLUSIVE)


async def _call(processor: PartitionProcessor, target: Target, body: bytes) -> Output:
    inv = new_invocation_id(
        os.urandom(24),
        service=target.service,
        handler=target.handler,
        key=target.key,
        idempotency_key=None,
    )
    answer = await processor.request(
        lambda token: Invoke(
            inv, target, body, (("content-type", "application/json"),), reply=token
        )
    )
    assert answer.completion is not None
    return await asyncio.wait_for(answer.completion, 20)


async def test_exclusive_calls_on_one_key_all_apply(partition: PartitionProcessor) -> None:
    outputs = await asyncio.gather(*(_call(partition, ADD, b"1") for _ in range(20)))
    assert sorted(int(o.value or b"0") for o in outputs) == list(range(1, 21))
    assert partition.store.state("Counter", "k") == {b"count": b"20"}
