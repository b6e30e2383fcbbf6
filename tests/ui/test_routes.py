"""The UI's routes on an in-process admin app (fake discovery and SQL, no browser).

Redirects as the official server's, static files, error pages for bad input (never a
stack trace), forms refused from other sites, values quoted in SQL, every page's
queries bounded by a LIMIT, and the two-step keyset paging of the invocation list.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from typing import Any

import httpx
import pytest
from asgi_admin import FakeAdmin

SAME_ORIGIN = {"origin": "http://admin.test"}


@pytest.fixture
def admin() -> FakeAdmin:
    return FakeAdmin()


@pytest.fixture
async def client(admin: FakeAdmin) -> AsyncIterator[httpx.AsyncClient]:
    async with admin.client() as c:
        yield c


async def _register(client: httpx.AsyncClient) -> str:
    resp = await client.post(
        "/ui/deployments", data={"uri": "http://127.0.0.1:9/"}, headers=SAME_ORIGIN
    )
    assert resp.status_code == 303, resp.text
    return resp.headers["location"]


@pytest.mark.parametrize(
    ("path", "location"),
    [("/", "/ui/"), ("/?a=1&b=x%20y", "/ui/?a=1&b=x+y"), ("/ui", "/ui/"), ("/v4", "/ui/")],
)
async def test_the_root_sends_browsers_to_the_ui_as_the_official_does(
    client: httpx.AsyncClient, path: str, location: str
) -> None:
    resp = await client.get(path)
    assert resp.status_code == 308
    assert resp.headers["location"] == location
    assert (await client.head("/")).status_code == 308
    post = await client.post("/")
    assert post.status_code == 405
    assert post.headers["allow"] == "GET,HEAD"


async def test_the_admin_api_keeps_its_paths(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/deployments")).json() == {"deployments": []}
    # A trailing slash is another path, as before the UI had one.
    assert (await client.get("/deployments/")).status_code == 404


async def test_static_files_are_served_and_nothing_else(client: httpx.AsyncClient) -> None:
    css = await client.get("/ui/static/style.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    js = await client.get("/ui/static/htmx.min.js")
    assert js.status_code == 200 and b"htmx" in js.content[:200]
    for name in ("README.md", "htmx.LICENSE", "..%2Froutes.py", "nope.js"):
        assert (await client.get(f"/ui/static/{name}")).status_code == 404


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/ui/invocations/inv_bad", 400, "is not an invocation id"),
        ("/ui/invocations?status=lost", 400, "unknown status"),
        ("/ui/invocations?since=yesterday", 400, "is not a time"),
        ("/ui/invocations?before=2024-01-01T00:00:00Z", 400, "needs both"),
        ("/ui/services/Nope/handlers/x", 404, "there is no service named"),
        ("/ui/state/Nope", 404, "there is no service named"),
        ("/ui/workflows/Nope/key", 404, "there is no service named"),
        ("/ui/deployments/dp_nope", 400, "Cannot parse"),
        ("/ui/nowhere", 404, ""),
    ],
)
async def test_bad_input_gets_an_error_page(
    client: httpx.AsyncClient, path: str, status: int, says: str
) -> None:
    resp = await client.get(path)
    assert resp.status_code == status
    assert says in unescape(resp.text)
    assert "Traceback" not in resp.text


async def test_unknown_handler_and_wrong_service_kinds_are_explained(
    client: httpx.AsyncClient,
) -> None:
    await _register(client)
    cases = [
        ("/ui/services/Greeter/handlers/nope", 404, "has no handler 'nope'"),
        ("/ui/state/Greeter", 400, "is a service, which has no keys or state"),
        ("/ui/workflows/Obj", 400, "is not a workflow"),
        ("/ui/invocations/inv_1cmzB8508NFe0eF1X7nOvdvUTBRzVAlSMc/explode", 404, "not one of"),
    ]
    for path, status, says in cases:
        resp = await client.get(path)
        assert (resp.status_code, says in unescape(resp.text)) == (status, True), path


async def test_a_failing_query_is_shown_not_raised(
    admin: FakeAdmin, client: httpx.AsyncClient
) -> None:
    def fail(sql: str) -> list[dict[str, Any]]:
        raise RuntimeError("storage on fire")

    admin.rows = fail
    resp = await client.get("/ui/invocations")
    assert resp.status_code == 500
    assert "storage on fire" in resp.text
    assert "Traceback" not in resp.text


async def test_forms_from_other_sites_are_refused(client: httpx.AsyncClient) -> None:
    data = {"uri": "http://127.0.0.1:9/"}
    for headers in (
        {"origin": "http://evil.test"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
    ):
        resp = await client.post("/ui/deployments", data=data, headers=headers)
        assert resp.status_code == 403, headers
    assert (await client.get("/deployments")).json() == {"deployments": []}
    # A form must be a form.
    resp = await client.post("/ui/deployments", json=data, headers=SAME_ORIGIN)
    assert resp.status_code == 415


async def test_registering_from_the_form_and_removing(client: httpx.AsyncClient) -> None:
    bad = await client.post(
        "/ui/deployments",
        data={"uri": "http://127.0.0.1:9/", "headers": "no colon here"},
        headers=SAME_ORIGIN,
    )
    assert bad.status_code == 400
    assert "line 1 is not a header" in bad.text
    location = await _register(client)
    page = await client.get(location)
    assert page.status_code == 200
    assert "Registered." in page.text and "fake/1.0" in page.text
    for name in ("Greeter", "Obj", "Flow"):
        assert name in page.text
    remove = await client.post(f"{location.split('?')[0]}/remove", headers=SAME_ORIGIN, data={})
    assert remove.status_code == 303
    assert (await client.get("/deployments")).json() == {"deployments": []}


async def test_values_reach_sql_quoted(admin: FakeAdmin, client: httpx.AsyncClient) -> None:
    await _register(client)
    await client.get("/ui/invocations", params={"service": "O'Brien", "key": "a'; DROP"})
    await client.get("/ui/state/Obj/it's")
    await client.get("/ui/workflows/Flow/k'ey")
    text = "\n".join(admin.statements)
    assert "target_service_name = 'O''Brien'" in text
    assert "target_service_key = 'a''; DROP'" in text
    assert "service_key = 'it''s'" in text
    assert "service_key = 'k''ey'" in text


async def test_no_page_queries_without_a_limit(admin: FakeAdmin, client: httpx.AsyncClient) -> None:
    await _register(client)
    inv = "inv_1cmzB8508NFe0eF1X7nOvdvUTBRzVAlSMc"

    def rows(sql: str) -> list[dict[str, Any]]:
        if "FROM sys_invocation WHERE id =" in sql:
            return [{"id": inv, "target": "Greeter/greet", "status": "running"}]
        return []

    admin.rows = rows
    pages = [
        "/ui/",
        "/ui/fragments/counts",
        "/ui/invocations",
        f"/ui/invocations?status=completed&before=2026-01-01T00:00:00Z&before_id={inv}",
        f"/ui/invocations/{inv}",
        f"/ui/invocations/{inv}/cancel",
        "/ui/state",
        "/ui/state/Obj",
        "/ui/state/Obj/k",
        "/ui/workflows",
        "/ui/workflows/Flow",
        "/ui/workflows/Flow/k",
        "/ui/services/Obj/handlers/put",
        "/ui/deployments",
    ]
    for path in pages:
        before = len(admin.statements)
        resp = await client.get(path)
        assert resp.status_code == 200, (path, resp.text)
        for sql in admin.statements[before:]:
            assert re.search(r"\bLIMIT \d+\b", sql), (path, sql)


async def test_the_list_reads_times_first_then_one_window(
    admin: FakeAdmin, client: httpx.AsyncClient
) -> None:
    # 51 invocations one millisecond apart, the newest first: a full page and one more.
    ids = [f"inv_1cmzB8508NFe0eF1X7nOvdvUTBRzVAlS{n:02d}" for n in range(51)]
    times = [f"2026-01-01T00:00:00.{999 - n:03d}Z" for n in range(51)]

    def rows(sql: str) -> list[dict[str, Any]]:
        if sql.startswith("SELECT created_at "):
            return [{"created_at": t} for t in times]
        return [
            {"id": i, "target": "Greeter/greet", "status": "completed", "created_at": t}
            for i, t in zip(ids, times, strict=True)
        ]

    admin.rows = rows
    resp = await client.get("/ui/invocations", params={"service": "Greeter"})
    assert resp.status_code == 200
    first, second = admin.statements
    # The first step reads only the creation times; the second only the page's window.
    assert first.startswith("SELECT created_at FROM sys_invocation WHERE ")
    assert "LIMIT 51" in first
    assert "created_at >= '2026-01-01T00:00:00.949Z'" in second
    assert ids[49] in resp.text and ids[50] not in resp.text
    older = re.search(r'rel="next" href="([^"]+)"', resp.text)
    assert older is not None
    link = older.group(1).replace("&amp;", "&")
    assert "before=2026-01-01T00%3A00%3A00.950Z" in link and f"before_id={ids[49]}" in link
    admin.statements.clear()
    await client.get(link)
    first, second = admin.statements
    assert "created_at < '2026-01-01T00:00:00.950Z'" in first
    assert f"(created_at < '2026-01-01T00:00:00.950Z' OR id < '{ids[49]}')" in second


async def test_the_playground_reports_an_unreachable_ingress(client: httpx.AsyncClient) -> None:
    await _register(client)
    page = await client.get("/ui/services/Greeter/handlers/greet")
    assert '<textarea id="body" name="body"' in page.text
    assert "&#34;&#34;</textarea>" in page.text  # an empty string, from the input schema
    resp = await client.post(
        "/ui/services/Greeter/handlers/greet", data={"body": '"x"'}, headers=SAME_ORIGIN
    )
    assert resp.status_code == 200
    assert "Could not reach the ingress" in resp.text


async def test_state_keys_page_by_keyset(admin: FakeAdmin, client: httpx.AsyncClient) -> None:
    await _register(client)
    keys = [f"k{n:03d}" for n in range(150)]
    # Two entries per key, in storage (key) order.
    admin.rows = lambda sql: [{"service_key": k} for k in keys for _ in range(2)]
    first = await client.get("/ui/state/Obj")
    shown = re.findall(r'href="/ui/state/Obj/(k\d+)"', first.text)
    assert shown == keys[:100]
    more = re.search(r'rel="next" href="([^"]+)"', first.text)
    assert more is not None and more.group(1) == "/ui/state/Obj?after=k099"
    await client.get(more.group(1))
    assert "service_key > 'k099'" in admin.statements[-1]
