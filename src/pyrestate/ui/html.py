"""HTML answers: the Jinja2 templates, error pages and redirects."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

import jinja2

from pyrestate import __version__
from pyrestate.admin.web import Response
from pyrestate.ui.values import when

HTML = "text/html; charset=utf-8"


class UiError(Exception):
    """Bad input or a missing thing: answered with an error page of this status."""

    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(f"{title}: {detail}" if detail else title)
        self.status = status
        self.title = title
        self.detail = detail


def _url_part(value: str) -> str:
    """One path segment of a link (a key may hold '/', '?', '#', ...)."""
    return quote(value, safe="")


def _query(params: dict[str, Any], **more: Any) -> str:
    """``?a=1&b=2`` of the non-empty values, or nothing."""
    kept = {k: v for k, v in {**params, **more}.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else ""


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("pyrestate.ui", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a template naming a missing value fails its test
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["when"] = when
_env.filters["seg"] = _url_part
_env.globals["query"] = _query
_env.globals["pyrestate_version"] = __version__


def render(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)


def page(template: str, status: int = 200, **context: Any) -> Response:
    body = render(template, **context).encode()
    return Response(status, body, [("content-type", HTML), ("cache-control", "no-store")])


def error_page(error: UiError) -> Response:
    return page(
        "error.html",
        error.status,
        http_status=error.status,
        title=error.title,
        detail=error.detail,
        nav="",
    )


def redirect(location: str, status: int = 303) -> Response:
    return Response(status, b"", [("location", location)])
