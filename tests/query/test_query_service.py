"""Hostile queries through the worker pool: each is answered with an error, and the
service keeps answering afterwards."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from query_fixtures import Filled

from pyrestate.query.engine import Limits
from pyrestate.query.service import QueryService
from pyrestate.query.tables import RegistrySnapshot


@pytest.fixture
async def service(filled: Filled) -> AsyncIterator[QueryService]:
    svc = QueryService(
        [filled.path],
        RegistrySnapshot,
        restate_version="1.7.12",
        workers=2,
        limits=Limits(seconds=3.0),
        wait_for_worker_s=1.0,
    )
    try:
        yield svc
    finally:
        await svc.aclose()


async def still_serving(service: QueryService) -> None:
    answer = await service.query("SELECT count(*) AS n FROM sys_invocation", True)
    assert answer.status == 200, answer.body
    assert json.loads(answer.body) == {"rows": [{"n": 7}]}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT " + " + ".join(["1"] * 3000),
        "SELECT " + "(" * 3000 + "1" + ")" * 3000,
        "SELECT length(repeat('x', 1000000000))",
        "SELECT length(repeat('x', 1000000000) || repeat('y', 1000000000))",
        "SELECT count(*) FROM generate_series(1, 100000000000)",
        "SELECT * FROM generate_series(1, 50000000)",
        # Under the series bound each, but billions together: only the deadline stops it.
        "SELECT count(*) FROM generate_series(1, 90000000) a, generate_series(1, 90000000) b",
    ],
    ids=["3000-terms", "3000-parens", "repeat-1e9", "repeat-2e9", "series-1e11",
         "series-result-too-big", "cross-join"],
)  # fmt: skip
async def test_hostile_queries_get_errors(service: QueryService, sql: str) -> None:
    answer = await asyncio.wait_for(service.query(sql, True), 30)
    if answer.status == 200:
        # Deep expressions DataFusion can handle are fine too, as long as they answer.
        assert sql.startswith("SELECT 1 +") or sql.startswith("SELECT (("), answer.body[:200]
    else:
        assert 400 <= answer.status < 600
        assert "message" in json.loads(answer.body)
    await still_serving(service)


async def test_more_queries_than_workers_wait_then_get_503(service: QueryService) -> None:
    slow = "SELECT count(*) FROM generate_series(1, 90000000) a, generate_series(1, 90000000) b"
    running = [asyncio.create_task(service.query(slow, True)) for _ in range(2)]
    await asyncio.sleep(0.3)
    refused = await service.query("SELECT 1", True)
    assert refused.status == 503
    for answer in await asyncio.gather(*running):
        assert answer.status == 500
    await still_serving(service)


async def test_arrow_unless_json_is_asked_for(service: QueryService) -> None:
    answer = await service.query("SELECT 1", False)
    assert answer.content_type == "application/vnd.apache.arrow.stream"
    assert answer.body.startswith(b"\xff\xff\xff\xff")
