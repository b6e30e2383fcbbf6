"""The playground: a form per handler that sends a request to the ingress and shows the answer.

The request leaves from the admin process (server side), so the browser never talks to
the ingress's origin (no CORS needed) and the page works without JavaScript; with htmx
the answer replaces only the answer panel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from pyrestate.admin.web import Request, Response
from pyrestate.ui.context import SERVICE_TYPES, Ui
from pyrestate.ui.forms import form
from pyrestate.ui.html import UiError, page
from pyrestate.ui.schema_example import example
from pyrestate.ui.values import Shown, show_bytes

CALL_TIMEOUT_S = 30.0  # a call that takes longer is better sent (its result stays attachable)


@dataclass(slots=True)
class Fields:
    """The form's values (what the user typed, shown again with the answer)."""

    key: str = ""
    body: str = ""
    idempotency_key: str = ""
    mode: str = "call"  # or "send"
    delay: str = ""


@dataclass(slots=True)
class Reply:
    """The ingress's answer, or why there is none (``problem``)."""

    url: str = ""
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Shown | None = None
    invocation_id: str | None = None
    problem: str = ""


async def _target(ui: Ui, service: str, handler: str) -> tuple[dict[str, Any], dict[str, Any]]:
    svc = await ui.service(service)
    for h in svc["handlers"]:
        if h["name"] == handler:
            return svc, h
    raise UiError(404, "No such handler", f"service '{service}' has no handler '{handler}'")


def _takes_json(h: dict[str, Any]) -> bool:
    return "input_json_schema" in h or str(h.get("input_description", "")).startswith("JSON")


def _first_body(h: dict[str, Any]) -> str:
    if "input_json_schema" in h:
        return example(h["input_json_schema"])
    return ""


def _render(
    svc: dict[str, Any], h: dict[str, Any], fields: Fields, reply: Reply | None, status: int = 200
) -> Response:
    return page(
        "playground.html",
        status,
        nav="overview",
        svc=svc,
        handler=h,
        types=SERVICE_TYPES,
        keyed=svc["ty"] != "Service",
        fields=fields,
        reply=reply,
    )


async def playground(ui: Ui, req: Request) -> Response:
    svc, h = await _target(ui, req.params["service"], req.params["handler"])
    return _render(svc, h, Fields(body=_first_body(h)), None)


def _problem(svc: dict[str, Any], h: dict[str, Any], fields: Fields) -> str:
    """Why the form cannot be sent as it is ('' if it can)."""
    if svc["ty"] != "Service" and not fields.key:
        return "This handler needs a key: a virtual object or workflow is called per key."
    if fields.mode not in ("call", "send"):
        return "Choose to call (wait for the result) or to send (one way)."
    if fields.delay and fields.mode != "send":
        return "A delay applies to sends only; choose Send or leave the delay empty."
    if fields.body.strip() and _takes_json(h):
        try:
            json.loads(fields.body)
        except ValueError as e:
            return f"The body is not valid JSON: {e}."
    return ""


async def call(ui: Ui, req: Request) -> Response:
    svc, h = await _target(ui, req.params["service"], req.params["handler"])
    values = form(req)
    fields = Fields(
        key=values.get("key", ""),
        body=values.get("body", ""),
        idempotency_key=values.get("idempotency_key", "").strip(),
        mode=values.get("mode", "call"),
        delay=values.get("delay", "").strip(),
    )
    problem = _problem(svc, h, fields)
    reply = Reply(problem=problem) if problem else await _send(ui, svc, h, fields)
    if "hx-request" in req.headers:
        # htmx swaps only 2xx answers: the panel carries the outcome, whatever it is.
        return page("_reply.html", reply=reply)
    return _render(svc, h, fields, reply, 400 if problem else 200)


async def _send(ui: Ui, svc: dict[str, Any], h: dict[str, Any], fields: Fields) -> Reply:
    if ui.ingress_url is None:
        return Reply(problem="The ingress address is not known to the admin API.")
    path = "/" + quote(svc["name"], safe="")
    if svc["ty"] != "Service":
        path += "/" + quote(fields.key, safe="")
    path += "/" + quote(h["name"], safe="")
    params = {}
    if fields.mode == "send":
        path += "/send"
        if fields.delay:
            params["delay"] = fields.delay
    url = ui.ingress_url.rstrip("/") + path
    headers = {}
    content = fields.body.encode() if fields.body.strip() else b""
    if content:
        headers["content-type"] = "application/json"
    if fields.idempotency_key:
        headers["idempotency-key"] = fields.idempotency_key
    try:
        async with httpx.AsyncClient(timeout=CALL_TIMEOUT_S) as client:
            answer = await client.post(url, content=content, headers=headers, params=params)
    except httpx.TimeoutException:
        return Reply(
            url=url,
            problem=f"No answer within {CALL_TIMEOUT_S:g} s. The invocation goes on; send it "
            "instead of calling it to get its id at once, and follow it under Invocations.",
        )
    except httpx.HTTPError as e:
        return Reply(url=url, problem=f"Could not reach the ingress at {url}: {e}")
    return Reply(
        url=str(answer.url),
        status=answer.status_code,
        reason=answer.reason_phrase,
        headers=answer.headers.multi_items(),
        body=show_bytes(answer.content),
        invocation_id=answer.headers.get("x-restate-id"),
    )
