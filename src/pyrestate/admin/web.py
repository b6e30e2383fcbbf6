"""The small HTTP layer under the admin API: requests, responses, routes, bodies.

Framework-level refusals (bad path, body or query) are answered as ``text/plain``, as
the official server's HTTP framework (axum) answers them.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote

from pyrestate import asgi
from pyrestate.admin.errors import AdminError
from pyrestate.admin.json_text import JsonError, parse_json_prefix

Scope = asgi.Scope
Receive = asgi.Receive
Send = asgi.Send

MAX_BODY = 10 * 1024 * 1024

T = TypeVar("T")


@dataclass(slots=True)
class Request:
    method: str
    path: str
    params: dict[str, str]
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    # 0 = no version prefix ("unknown" officially), else 2..4.
    api_version: int


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


class PlainError(Exception):
    """A framework-level refusal answered as ``text/plain``."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def json_response(
    status: int, value: Any, headers: list[tuple[str, str]] | None = None
) -> Response:
    body = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(status, body, [("content-type", "application/json"), *(headers or [])])


def text_response(status: int, text: str) -> Response:
    return Response(status, text.encode(), [("content-type", "text/plain; charset=utf-8")])


def error_response(error: AdminError) -> Response:
    return json_response(error.status, error.body())


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    segments: tuple[str, ...]  # "{name}" marks a parameter
    handler: Handler

    def match(self, parts: list[str]) -> dict[str, str] | None:
        """The percent-decoded parameters if the path ``parts`` fit, else None."""
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for seg, part in zip(self.segments, parts, strict=True):
            if seg.startswith("{"):
                if not part:
                    return None
                params[seg[1:-1]] = unquote(part)
            elif seg != part:
                return None
        return params


def _json_content_type(value: str | None) -> bool:
    if value is None:
        return False
    mime = value.split(";", 1)[0].strip().lower()
    kind, _, sub = mime.partition("/")
    return kind == "application" and (sub == "json" or sub.endswith("+json"))


def _bad_json(error: JsonError) -> PlainError:
    return PlainError(400, f"Failed to parse the request body as JSON: {error}")


def read_json_body(req: Request, check: Callable[[Any], T]) -> T:
    """The JSON body, typed by ``check``, the way the official (axum) extractor reads it.

    PlainError 415 without a JSON content-type, 400 on malformed JSON; errors of
    ``check`` come before those about what trails the value, as officially.
    """
    if not _json_content_type(req.headers.get("content-type")):
        raise PlainError(415, "Expected request with `Content-Type: application/json`")
    try:
        value, trailing = parse_json_prefix(req.body)
    except JsonError as e:
        raise _bad_json(e) from None
    typed = check(value)
    if trailing is not None:
        raise _bad_json(trailing)
    return typed


async def read_body(receive: Receive) -> bytes:
    try:
        body = await asgi.read_body(receive, MAX_BODY)
    except asgi.BodyTooLarge:
        raise PlainError(413, "Failed to buffer the request body: length limit exceeded") from None
    return body or b""
