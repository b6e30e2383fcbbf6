"""The ingress (:8080): an ASGI app that turns HTTP requests into partition commands.

Request bodies are opaque bytes from the client to the handler and back; nothing here
parses or re-encodes payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qs, unquote

from pyrestate.asgi import BodyTooLarge, Receive, Scope, Send, read_body
from pyrestate.core.commands import Attach, DeliverNotification, Invoke, Retention
from pyrestate.core.ids import (
    AwakeableId,
    IdError,
    InvocationId,
    new_invocation_id,
    workflow_run_id,
)
from pyrestate.core.limits import MAX_EPOCH_MS
from pyrestate.core.model import Failure, Output, Target
from pyrestate.core.notifications import signal
from pyrestate.ingress.durations import DurationError, parse_duration_ms
from pyrestate.official_format import format_timestamp
from pyrestate.partition.processor import (
    Answer,
    CommandRejected,
    PartitionProcessor,
    PartitionUnavailable,
)

if TYPE_CHECKING:  # tracing (and OpenTelemetry) is loaded only when it is configured
    from pyrestate.telemetry.tracing import Tracer


@dataclass(frozen=True, slots=True)
class Route:
    """What the ingress needs to know about one handler."""

    public: bool
    output_content_type: Callable[[bool], str | None]  # given: is the output empty
    retention: Retention
    target_for: Callable[[str | None], Target]
    check_input: Callable[[str | None, bytes], str | None]


class IngressSchemas(Protocol):
    def route(self, service: str, handler: str) -> Route:
        """Raise LookupError whose text is the official 404 message."""
        ...

    def is_keyed(self, service: str) -> bool:
        """Raise LookupError whose text is the official 404 message."""
        ...

    def service_names(self) -> list[str]: ...


class HttpError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        source: str = "ingress",
        invocation_id: InvocationId | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.source = source
        self.invocation_id = invocation_id


_BAD_WORKFLOW_PATH = (
    "bad path, expected either /restate/workflow/:workflow_name/:workflow_key/output or "
    "/restate/workflow/:workflow_name/:workflow_key/attach"
)
_MAX_LOOKUP_BODY = 64 * 1024  # a lookup body names one target
_BAD_INVOCATION_PATH = (
    "bad path, expected either /restate/invocation/:invocation_id/output or "
    "/restate/invocation/:invocation_id/attach or "
    "/restate/invocation/:invocation_target/:idempotency_key/output or "
    "/restate/invocation/:invocation_target/:idempotency_key/attach"
)
# An ASGI middleware (metrics) may put a callable here: the ingress calls it with (service,
# "call" or "send") once it knows a request invokes a registered service, so that nothing
# parses the path a second time.
ADMIT_HOOK = "pyrestate.admit"
# Bodies above this size are refused (the official ingress.request-size-limit default).
DEFAULT_MAX_BODY = 32 * 1024 * 1024


_JSON = [(b"content-type", b"application/json")]


class IngressApp:
    def __init__(
        self,
        partition: PartitionProcessor,
        schemas: IngressSchemas,
        max_body: int = DEFAULT_MAX_BODY,
        tracer: Tracer | None = None,
    ) -> None:
        self._partition = partition
        self._schemas = schemas
        self._max_body = max_body
        self._tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            await self._dispatch(scope, receive, send)
        except HttpError as e:
            extra = []
            if e.invocation_id is not None:
                extra.append((b"x-restate-id", str(e.invocation_id).encode()))
            await _error(send, e.status, str(e), e.source, extra=extra)
        except PartitionUnavailable as e:
            await _error(send, 503, str(e), "ingress")
        except CommandRejected as e:
            await _error(send, 500, str(e), "ingress")

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        # Split the raw path, then decode each segment: a key may contain "%2F".
        raw = scope.get("raw_path")
        raw_path = raw.decode("latin-1").split("?", 1)[0] if raw else path
        # Empty segments count: "/Counter//add" calls the object with the empty key.
        segments = raw_path.split("/")[1:]
        if len(segments) > 1 and segments[-1] == "":
            segments.pop()
        if segments[:1] == ["restate"]:
            await self._restate_route(segments[1:], scope, receive, send)
            return
        await self._invoke(segments, scope, receive, send, path)

    async def _restate_route(
        self, rest: list[str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        if rest == ["health"]:
            if scope["method"] != "GET":
                raise HttpError(405, "method not allowed")
            doc = {"services": self._schemas.service_names()}
            await _respond(send, 200, json.dumps(doc).encode(), [*_JSON])
            return
        if len(rest) >= 2 and rest[0] in ("call", "send"):
            tail = rest[1:] + (["send"] if rest[0] == "send" else [])
            await self._invoke(tail, scope, receive, send, scope["path"])
            return
        if rest[:1] == ["invocation"]:
            if scope["method"] != "GET":
                raise HttpError(405, "method not allowed")
            await self._attach(rest[1:], receive, send)
            return
        if rest[:1] == ["workflow"]:
            if len(rest) != 4 or rest[3] not in ("attach", "output"):
                raise HttpError(400, _BAD_WORKFLOW_PATH)
            if scope["method"] != "GET":
                raise HttpError(405, "method not allowed")
            run = workflow_run_id(unquote(rest[1]), unquote(rest[2]))
            await self._answer_attach(run, rest[3] == "attach", receive, send)
            return
        if rest[:1] in (["attach"], ["output"]) and len(rest) <= 2:
            # By id (GET), or by a lookup body naming the target (POST).
            if scope["method"] != ("GET" if len(rest) == 2 else "POST"):
                raise HttpError(405, "method not allowed")
            if len(rest) == 2:
                inv_id = _parse_invocation_id(rest[1])
            else:
                body = await _read_body(receive, _MAX_LOOKUP_BODY)
                inv_id = _lookup(body, "invalid request body")
            await self._answer_attach(inv_id, rest[0] == "attach", receive, send)
            return
        if rest == ["lookup"]:
            if scope["method"] != "POST":
                raise HttpError(405, "method not allowed")
            body = await _read_body(receive, _MAX_LOOKUP_BODY)
            inv_id = _lookup(body, "invalid lookup body")
            doc = json.dumps({"invocationId": str(inv_id)}).encode()
            await _respond(send, 200, doc, [*_JSON])
            return
        if rest[:1] == ["awakeables"]:
            if len(rest) != 3 or rest[2] not in ("resolve", "reject"):
                if len(rest) == 2:
                    raise HttpError(
                        400,
                        "bad path, expected either /restate/awakeables/:id/resolve or "
                        "/restate/awakeables/:id/reject",
                    )
                raise HttpError(404, "not found")
            if scope["method"] != "POST":
                raise HttpError(405, "method not allowed")
            body = await _read_body(receive, self._max_body)
            await self._complete_awakeable(rest[1], rest[2] == "resolve", body, send)
            return
        raise HttpError(404, "not found")

    # --- Invocations

    async def _invoke(
        self, segments: list[str], scope: Scope, receive: Receive, send: Send, path: str
    ) -> None:
        # The body lives in _submit's frame only: a call waiting for its result must not
        # keep its input (up to max_body bytes) alive for as long as the invocation runs.
        submitted = await self._submit(segments, scope, receive, send, path)
        if submitted is None:
            return
        answer, route = submitted
        assert answer.invocation_id is not None
        output = await self._wait(answer, receive)
        if output is not None:
            await _send_output(
                send, answer.invocation_id, output, route.output_content_type, answer.expires_at
            )

    async def _submit(
        self, segments: list[str], scope: Scope, receive: Receive, send: Send, path: str
    ) -> tuple[Answer, Route] | None:
        """Accept the invocation; answer a send at once (None), else return what to await."""
        if len(segments) < 2:
            raise HttpError(400, f"bad path: {path}")
        service = unquote(segments[0])
        try:
            keyed = self._schemas.is_keyed(service)
        except LookupError as e:
            raise HttpError(404, str(e)) from None
        want = 3 if keyed else 2
        is_send = len(segments) == want + 1 and segments[-1] == "send"
        admit = scope.get(ADMIT_HOOK)
        if admit is not None:
            admit(service, "send" if is_send else "call")
        if len(segments) != want + int(is_send):
            raise HttpError(
                400,
                "bad path, expected either /:service-name/:handler or "
                "/:object-name/:object-key/:handler",
            )
        key = unquote(segments[1]) if keyed else None
        handler = unquote(segments[want - 1])
        try:
            route = self._schemas.route(service, handler)
        except LookupError as e:
            raise HttpError(404, str(e)) from None
        if not route.public:
            raise HttpError(400, f"the handler '{handler}' is private, cannot be called")
        headers = _headers(scope)
        body = await _read_body(receive, self._max_body)
        problem = route.check_input(headers.get("content-type"), body)
        if problem is not None:
            raise HttpError(400, problem)
        query = parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True)
        execution_time = None
        if "delay" in query:
            try:
                delay = parse_duration_ms(query["delay"][0])
            except DurationError as e:
                raise HttpError(
                    400, f"bad delay query parameter, must be a ISO8601 duration: {e}"
                ) from None
            if not is_send:
                raise HttpError(
                    400,
                    "cannot use the delay query parameter with calls. "
                    "The delay is supported only with sends",
                )
            execution_time = self._partition.now() + delay
            if execution_time > MAX_EPOCH_MS:
                # The official cannot show (and fails on) instants past the year 9999.
                raise HttpError(
                    400,
                    "bad delay query parameter, the execution time it gives is past "
                    "9999-12-31T23:59:59.999Z",
                )
        idempotency_key = headers.get("idempotency-key") or None
        target = route.target_for(key)
        inv_id = target.new_invocation_id(os.urandom(24), idempotency_key)
        trace = None
        if self._tracer is not None:
            client = scope.get("client")
            trace = self._tracer.ingress(inv_id, target, headers, tuple(client) if client else None)
        # As officially: the path asked for first, then the request's own headers.
        passed = (
            ("x-restate-ingress-path", scope["path"]),
            *((k, v) for k, v in headers.items() if _forwarded(k)),
        )

        def make(token: int) -> Invoke:
            return Invoke(
                invocation_id=inv_id,
                target=target,
                input=body,
                headers=passed,
                idempotency_key=idempotency_key,
                execution_time=execution_time,
                reply=token,
                retention=route.retention,
                trace=trace,
            )

        # Nobody waits for a send's result: it parks no completion future.
        answer = await self._partition.request(make, follow=not is_send)
        assert answer.invocation_id is not None
        if is_send:
            doc: dict[str, str] = {"invocationId": str(answer.invocation_id)}
            if execution_time is not None:
                doc["executionTime"] = format_timestamp(execution_time)
            doc["status"] = "PreviouslyAccepted" if answer.previously else "Accepted"
            await _respond(
                send,
                202,
                json.dumps(doc).encode(),
                [*_JSON, (b"x-restate-id", str(answer.invocation_id).encode())],
            )
            return None
        return answer, route

    async def _wait(self, answer: Answer, receive: Receive) -> Output | None:
        """The invocation's output, or None once the client has gone away.

        A client that leaves must not leave its completion future parked in the
        partition until the invocation ends (maybe never): it is forgotten at once.
        """
        if answer.output is not None:
            return answer.output
        completion = answer.completion
        assert completion is not None and answer.invocation_id is not None
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((completion, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not completion.done():
                # The client left, or this request was cancelled (server shutdown).
                self._partition.forget(answer.invocation_id, completion)
        if completion.cancelled():
            return None
        return completion.result()

    async def _attach(self, rest: list[str], receive: Receive, send: Send) -> None:
        """``{id}/{attach|output}`` or ``{target...}/{idempotency key}/{attach|output}``."""
        if len(rest) < 2 or rest[-1] not in ("attach", "output"):
            if len(rest) >= 2:
                raise HttpError(404, "not found")
            raise HttpError(400, _BAD_INVOCATION_PATH)
        wait = rest[-1] == "attach"
        if len(rest) == 2:
            inv_id = _parse_invocation_id(rest[0])
        else:
            inv_id = self._idempotent_id([unquote(s) for s in rest[:-1]])
        await self._answer_attach(inv_id, wait, receive, send)

    async def _answer_attach(
        self, inv_id: InvocationId, wait: bool, receive: Receive, send: Send
    ) -> None:
        """An invocation's output: awaited (attach) or only if there already (output)."""
        answer = await self._partition.request(lambda token: Attach(inv_id, token, wait))
        if answer.invocation_id is None:
            if wait:
                raise HttpError(404, "not found", "invocation", inv_id)
            raise HttpError(404, "invocation not found")
        if answer.output is None and not wait:
            raise HttpError(470, "the invocation exists but has not completed yet")
        output = await self._wait(answer, receive)
        if output is None:
            return
        content_type = None
        if answer.target is not None:
            with contextlib.suppress(LookupError):
                route = self._schemas.route(answer.target.service, answer.target.handler)
                content_type = route.output_content_type
        await _send_output(send, inv_id, output, content_type, answer.expires_at)

    def _idempotent_id(self, parts: list[str]) -> InvocationId:
        """The id an idempotent request got: derived from its target and key."""
        try:
            keyed = self._schemas.is_keyed(parts[0])
        except LookupError as e:
            raise HttpError(404, str(e)) from None
        if len(parts) != (4 if keyed else 3):
            raise HttpError(400, _BAD_INVOCATION_PATH)
        service, key, handler, idem = (
            (parts[0], parts[1], parts[2], parts[3]) if keyed else (parts[0], None, *parts[1:])
        )
        return new_invocation_id(
            b"", service=service, handler=handler, key=key, idempotency_key=idem
        )

    # --- Awakeables

    async def _complete_awakeable(
        self, raw_id: str, resolve: bool, body: bytes, send: Send
    ) -> None:
        try:
            awk = AwakeableId.parse(raw_id)
        except IdError as e:
            raise HttpError(400, f"bad awakeable id '{raw_id}': {e}") from None
        if resolve:
            output = Output(value=body)
        else:
            output = Output(failure=Failure(500, body.decode("utf-8", "replace")))
        entry = signal(awk.index, output)
        await self._partition.request(
            lambda token: DeliverNotification(
                awk.invocation_id, entry, signal=awk.index, reply=token
            )
        )
        await _respond(send, 202, b"", [])


async def _disconnected(receive: Receive) -> None:
    """Return when the client disconnects; anything else it still sends is dropped."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def overloaded(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer to a request over the in-flight limit (see `pyrestate.http_front`)."""
    await _error(
        send,
        503,
        "too many requests in flight, retry later",
        "ingress",
        extra=[(b"retry-after", b"1")],
    )


async def _send_output(
    send: Send,
    inv_id: InvocationId,
    output: Output,
    content_type: Callable[[bool], str | None] | None,
    expires_at: int | None = None,
) -> None:
    """``expires_at``: the output came from a stored completion, kept until then."""
    headers = [(b"x-restate-id", str(inv_id).encode())]
    if expires_at is not None:
        headers.append((b"idempotency-expires", _expiry_text(expires_at).encode()))
    if output.failure is not None:
        await _error(
            send,
            _status_of(output.failure.code),
            output.failure.message,
            "invocation",
            code=output.failure.code,
            extra=headers,
            metadata=output.failure.metadata,
        )
        return
    ctype = content_type(not output.value) if content_type is not None else None
    if ctype is not None:
        headers.append((b"content-type", ctype.encode()))
    await _respond(send, 200, output.value or b"", headers)


def _expiry_text(ms: int) -> str:
    """The official form: RFC 3339 in milliseconds with ``+00:00``."""
    at = datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000)
    return at.isoformat(timespec="milliseconds")


def _parse_invocation_id(text: str) -> InvocationId:
    try:
        return InvocationId.parse(text)
    except IdError as e:
        raise HttpError(400, f"bad invocation id '{text}': {e}") from None


def _lookup(body: bytes, what: str) -> InvocationId:
    """The invocation a lookup body names: by id, workflow, or idempotent request."""

    def field(doc: dict[str, object], name: str, optional: bool = False) -> str | None:
        value = doc.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise ValueError(f"missing field `{name}`" if value is None else f"bad `{name}`")
        return value

    try:
        doc = json.loads(body)
        if not isinstance(doc, dict):
            raise ValueError("expected an object")
        target = field(doc, "target")
        if target == "invocation":
            return _parse_invocation_id(field(doc, "invocationId") or "")
        if target == "workflow":
            return workflow_run_id(
                field(doc, "workflowName") or "", field(doc, "workflowKey") or ""
            )
        if target == "idempotentInvocation":
            return new_invocation_id(
                b"",
                service=field(doc, "service") or "",
                handler=field(doc, "handler") or "",
                key=field(doc, "key", optional=True),
                idempotency_key=field(doc, "idempotencyKey") or "",
            )
        raise ValueError(
            f"unknown variant `{target}`, expected one of `invocation`, `idempotentInvocation`, "
            "`workflow`"
        )
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise HttpError(500, f"cannot read body: {what}: {e}") from None


def _status_of(code: int) -> int:
    return code if 400 <= code <= 599 else 500


def _forwarded(name: str) -> bool:
    # Hop-by-hop headers and the host stay here (the official passes the rest, the
    # request's content-length included).
    return name not in {"host", "connection", "transfer-encoding", "keep-alive"}


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope["headers"]:
        out[k.decode("latin-1").lower()] = v.decode("latin-1")
    return out


async def _read_body(receive: Receive, limit: int) -> bytes:
    try:
        body = await read_body(receive, limit)
    except BodyTooLarge:
        raise HttpError(413, "cannot read body: LengthLimitError") from None
    if body is None:
        raise HttpError(400, "client disconnected")
    return body


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _error(
    send: Send,
    status: int,
    message: str,
    source: str,
    code: int | None = None,
    extra: list[tuple[bytes, bytes]] | None = None,
    metadata: tuple[tuple[str, str], ...] = (),
) -> None:
    doc: dict[str, object] = {"code": code if code is not None else status, "message": message}
    if metadata:
        doc["metadata"] = dict(sorted(metadata))  # as the official: keys sorted
    doc["source"] = source
    headers = [*(extra or []), (b"x-restate-error-source", source.encode()), *_JSON]
    await _respond(send, status, json.dumps(doc).encode(), headers)
