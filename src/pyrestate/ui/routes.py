"""The web UI's routes on the admin API (``/ui/...``), and ``/`` sending browsers there.

Every page handler is guarded: bad input and missing things get an error page with a
clear message and a 4xx status, anything unexpected a 500 page (the details go to the
log, never to the browser).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from typing import Protocol
from urllib.parse import urlencode

from pyrestate import asgi
from pyrestate.admin.in_process import AdminApi, ApiError
from pyrestate.admin.web import Handler, Request, Response
from pyrestate.ui import deployments, invocations, overview, playground, state, workflows
from pyrestate.ui.context import Ui
from pyrestate.ui.html import UiError, error_page, redirect
from pyrestate.ui.sql import BadValue

log = logging.getLogger("pyrestate.ui")

Page = Callable[[Ui, Request], Awaitable[Response]]

_STATIC_TYPES = {
    "style.css": "text/css; charset=utf-8",
    "htmx.min.js": "text/javascript; charset=utf-8",
}


class AdminRoutes(Protocol):
    """The admin app: routes can be added, and it can be called as an ASGI app."""

    def route(self, method: str, path: str, handler: Handler) -> None: ...

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None: ...


def _guard(ui: Ui, handler: Page) -> Handler:
    async def handle(req: Request) -> Response:
        try:
            return await handler(ui, req)
        except UiError as e:
            return error_page(e)
        except BadValue as e:
            return error_page(UiError(400, "Bad request", str(e)))
        except ApiError as e:
            return error_page(UiError(e.status, "The admin API refused", e.message))
        except Exception:
            log.exception("UI page %s %s failed", req.method, req.path)
            return error_page(
                UiError(
                    500, "Internal error", "the page could not be made; the server log says why"
                )
            )

    return handle


async def _to_ui(req: Request) -> Response:
    # As the official server: a permanent redirect that keeps the query string.
    query = f"?{urlencode(req.query)}" if req.query else ""
    return redirect(f"/ui/{query}", status=308)


@cache
def _static_file(name: str) -> bytes:
    return (resources.files("pyrestate.ui") / "static" / name).read_bytes()


async def _static(req: Request) -> Response:
    name = req.params["name"]
    kind = _STATIC_TYPES.get(name)
    if kind is None:
        return error_page(UiError(404, "Not found", f"there is no file '{name}' here"))
    # Links carry the server version (?v=), so a new version is fetched anew.
    headers = [("content-type", kind), ("cache-control", "public, max-age=86400")]
    return Response(200, _static_file(name), headers)


def add_ui_routes(app: AdminRoutes, *, ingress_url: str | None) -> None:
    """Serve the UI on ``app``; the playground sends its requests to ``ingress_url``."""
    ui = Ui(AdminApi(app), ingress_url)
    pages: list[tuple[str, str, Page]] = [
        ("GET", "/ui/", overview.overview),
        ("GET", "/ui/fragments/counts", overview.counts_fragment),
        ("GET", "/ui/services/{service}/handlers/{handler}", playground.playground),
        ("POST", "/ui/services/{service}/handlers/{handler}", playground.call),
        ("GET", "/ui/invocations", invocations.list_page),
        ("GET", "/ui/invocations/{invocation_id}", invocations.invocation_page),
        ("GET", "/ui/invocations/{invocation_id}/{action}", invocations.confirm_page),
        ("POST", "/ui/invocations/{invocation_id}/{action}", invocations.act),
        ("GET", "/ui/state", state.index),
        ("GET", "/ui/state/{service}", state.service_keys),
        ("GET", "/ui/state/{service}/{key}", state.key_page),
        ("POST", "/ui/state/{service}/{key}", state.edit),
        ("GET", "/ui/workflows", workflows.index),
        ("GET", "/ui/workflows/{service}", workflows.runs),
        ("GET", "/ui/workflows/{service}/{key}", workflows.key_page),
        ("GET", "/ui/deployments", deployments.list_page),
        ("POST", "/ui/deployments", deployments.register),
        ("GET", "/ui/deployments/{deployment}", deployments.detail),
        ("GET", "/ui/deployments/{deployment}/remove", deployments.confirm_remove),
        ("POST", "/ui/deployments/{deployment}/remove", deployments.remove),
    ]
    app.route("GET", "/", _to_ui)
    app.route("GET", "/ui", _to_ui)
    app.route("GET", "/ui/static/{name}", _static)
    for method, path, handler in pages:
        app.route(method, path, _guard(ui, handler))
