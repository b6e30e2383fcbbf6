"""Deployments: the list, registration, one deployment's details, and its removal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pyrestate.admin.in_process import ApiError
from pyrestate.admin.web import Request, Response
from pyrestate.ui.context import SERVICE_TYPES, Ui
from pyrestate.ui.forms import form, same_origin
from pyrestate.ui.html import UiError, page, redirect


@dataclass(slots=True)
class Registration:
    """The registration form's values."""

    uri: str = ""
    headers: str = ""  # one "Name: value" per line
    use_http_11: bool = False
    force: bool = False
    problem: str = ""


def parse_headers(text: str) -> dict[str, str]:
    """``Name: value`` lines (blank lines skipped) as a dict; ValueError names a bad line."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name or any(c in name for c in " \t"):
            raise ValueError(f"line {number} is not a header ('Name: value'): {line.strip()!r}")
        headers[name] = value.strip()
    return headers


async def _list(ui: Ui) -> list[dict[str, Any]]:
    deployments = (await ui.api.get("/deployments"))["deployments"]
    return sorted(deployments, key=lambda d: d["created_at"], reverse=True)


def _render(deployments: list[dict[str, Any]], reg: Registration, status: int = 200) -> Response:
    return page("deployments.html", status, nav="deployments", deployments=deployments, reg=reg)


async def list_page(ui: Ui, req: Request) -> Response:
    return _render(await _list(ui), Registration())


async def register(ui: Ui, req: Request) -> Response:
    values = form(req)
    reg = Registration(
        uri=values.get("uri", "").strip(),
        headers=values.get("headers", ""),
        use_http_11=bool(values.get("use_http_11")),
        force=bool(values.get("force")),
    )
    status = 400
    if not reg.uri:
        reg.problem = "Give the deployment's URI, e.g. http://localhost:9080."
    else:
        try:
            body: dict[str, Any] = {"uri": reg.uri, "force": reg.force}
            body["additional_headers"] = parse_headers(reg.headers)
            if reg.use_http_11:
                body["use_http_11"] = True
            answer = await ui.api.call("POST", "/deployments", body)
        except ValueError as e:
            reg.problem = f"Additional headers: {e}."
        except ApiError as e:
            reg.problem = f"Registration refused: {e.message}"
            status = e.status
        else:
            created = answer.json()
            return redirect(f"/ui/deployments/{quote(created['id'], safe='')}?registered=1")
    return _render(await _list(ui), reg, status)


async def _deployment(ui: Ui, dep_id: str) -> dict[str, Any]:
    try:
        return await ui.api.get(f"/deployments/{quote(dep_id, safe='')}")
    except ApiError as e:
        if e.status in (400, 404):
            raise UiError(e.status, "No such deployment", e.message) from None
        raise


async def detail(ui: Ui, req: Request) -> Response:
    dep = await _deployment(ui, req.params["deployment"])
    registered = bool(dict(req.query).get("registered"))
    return page(
        "deployment.html", nav="deployments", dep=dep, types=SERVICE_TYPES, registered=registered
    )


async def confirm_remove(ui: Ui, req: Request) -> Response:
    dep = await _deployment(ui, req.params["deployment"])
    return page("confirm_remove.html", nav="deployments", dep=dep)


async def remove(ui: Ui, req: Request) -> Response:
    same_origin(req)  # the form has no fields
    dep = await _deployment(ui, req.params["deployment"])
    await ui.api.call("DELETE", f"/deployments/{quote(dep['id'], safe='')}?force=true")
    return redirect("/ui/deployments")
