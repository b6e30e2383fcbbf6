"""``POST /query`` on the admin API: status codes, content types and bodies as the
official server's (probe item 9), and an end-to-end run with a real server and SDK."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
from query_fixtures import Filled

from pyrestate.admin.app import AdminApp
from pyrestate.admin.registry_store import RegistryStore
from pyrestate.query.routes import add_query_routes, registry_snapshot
from pyrestate.query.service import QueryService
from pyrestate.schemas import RegistryHolder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import Deployment, Server, register

ARROW = "application/vnd.apache.arrow.stream"


@pytest.fixture
async def client(filled: Filled, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = RegistryStore(tmp_path / "metadata.db")
    holder = RegistryHolder(store.load())
    app = AdminApp(holder, save=store.save)
    service = QueryService(
        [filled.path],
        lambda: registry_snapshot(holder.current, "1.7.12"),
        restate_version="1.7.12",
    )
    add_query_routes(app, service)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as c:
            yield c
    finally:
        await service.aclose()


async def test_json_only_for_exactly_application_json(client: httpx.AsyncClient) -> None:
    body = {"query": "SELECT 1"}
    got = await client.post("/query", json=body, headers={"accept": "application/json"})
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"rows": [{"Int64(1)": 1}]}
    for accept in ("*/*", ARROW, None):
        headers = {"accept": accept} if accept else {}
        if accept is None:
            client.headers.pop("accept", None)
        got = await client.post("/v4/query", json=body, headers=headers)
        assert got.status_code == 200
        assert got.headers["content-type"] == ARROW
        table = pa.ipc.open_stream(got.content).read_all()
        assert table.schema.names == ["Int64(1)"] and table.column(0).to_pylist() == [1]


async def test_official_error_answers(client: httpx.AsyncClient) -> None:
    got = await client.post(
        "/query", content=b'{"q":1}', headers={"content-type": "application/json"}
    )
    assert got.status_code == 422
    assert got.headers["content-type"] == "text/plain; charset=utf-8"
    assert got.text == (
        "Failed to deserialize the JSON body into the target type: missing field `query` "
        "at line 1 column 7"
    )
    got = await client.post("/query", content=b'{"query":"select 1"}')
    assert got.status_code == 415
    assert got.text == "Expected request with `Content-Type: application/json`"
    got = await client.get("/query")
    assert got.status_code == 405 and got.headers["allow"] == "POST"
    got = await client.post("/query", json={"query": "SELEC garbage"})
    assert got.status_code == 400
    assert got.json()["message"].startswith("Datafusion error: SQL error: ParserError(")
    got = await client.post("/query", json={"query": "SELECT * FROM nope"})
    assert got.status_code == 500
    assert got.json() == {
        "message": "Datafusion error: Error during planning: table 'restate.public.nope' not found"
    }


# --- end to end: a real server process and the official SDK


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server("pyrestate", tmp_path / "server", None)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_invocations_state_and_journal_read_back_through_query(
    server: Server, tmp_path: Path
) -> None:
    counts = tmp_path / "counts"
    counts.mkdir()
    dep = Deployment("examples.counter:app", tmp_path, counts)
    dep.start()
    try:
        with httpx.Client(timeout=30) as http:
            assert register(http, server.admin_url, dep.url).status_code == 201
            for n in (3, 4):
                got = http.post(f"{server.ingress_url}/Counter/k1/add", json=n)
                assert got.status_code == 200, got.text

            def query(sql: str) -> list[dict]:
                got = http.post(
                    f"{server.admin_url}/v4/query",
                    json={"query": sql},
                    headers={"accept": "application/json"},
                )
                assert got.status_code == 200, got.text
                return got.json()["rows"]

            invocations = query(
                "SELECT * FROM sys_invocation WHERE target = 'Counter/k1/add' ORDER BY created_at"
            )
            assert len(invocations) == 2
            first = invocations[0]
            assert first["status"] == "completed"
            assert first["completion_result"] == "success"
            assert first["target_service_ty"] == "virtual_object"
            assert first["pinned_deployment_id"].startswith("dp_")
            assert first["journal_size"] >= 2
            state = query(
                "select key, value from state where service_name = 'Counter' "
                "and service_key = 'k1' ;"
            )
            assert [(r["key"], bytes.fromhex(r["value"])) for r in state] == [("count", b"7")]
            journal = query(f"SELECT * FROM sys_journal WHERE id = '{first['id']}' ORDER BY index")
            types = [j["entry_type"] for j in journal]
            assert types[0] == "Command: Input" and types[-1] == "Command: Output"
            assert "Command: SetState" in types
            (svc,) = query("SELECT name, ty FROM sys_service")
            assert svc == {"name": "Counter", "ty": "virtual_object"}
            # Arrow for the CLI's `*/*`.
            got = http.post(
                f"{server.admin_url}/v4/query",
                json={"query": "SELECT COUNT(*) FROM sys_invocation"},
                headers={"accept": "*/*"},
            )
            assert got.headers["content-type"] == ARROW
            assert pa.ipc.open_stream(got.content).read_all().column(0).to_pylist() == [2]
    finally:
        dep.stop()
    assert not server.log_problems()
