"""Invocation control on the admin API: cancel, kill, purge, pause, resume.

``PATCH /invocations/{id}/{action}`` answers once the partition has committed the
change, with the official status codes and messages; ``DELETE /invocations/{id}?mode=``
is the older form that answers 202 whatever the outcome.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Protocol

from pyrestate.admin.errors import AdminError
from pyrestate.admin.web import PlainError, Request, Response, json_response
from pyrestate.core.commands import Command, Control, ControlAction, ControlOutcome, RestartAsNew
from pyrestate.core.ids import IdError, InvocationId
from pyrestate.partition.processor import Answer


class Partition(Protocol):
    async def request(self, make: Callable[[int], Command], follow: bool = True) -> Answer: ...


class Routes(Protocol):
    def route(
        self, method: str, path: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> None: ...


# Outcome -> status, per action; an outcome missing here is an error (see _ERRORS).
_SUCCESS: dict[ControlAction, dict[ControlOutcome, int]] = {
    ControlAction.CANCEL: {ControlOutcome.DONE: 200, ControlOutcome.APPENDED: 202},
    ControlAction.KILL: {ControlOutcome.DONE: 200},
    ControlAction.PURGE: {ControlOutcome.DONE: 200},
    ControlAction.PURGE_JOURNAL: {ControlOutcome.DONE: 200},
    ControlAction.PAUSE: {ControlOutcome.DONE: 202, ControlOutcome.ALREADY: 200},
    ControlAction.RESUME: {ControlOutcome.DONE: 200},
}
_ERRORS: dict[ControlOutcome, tuple[int, str]] = {
    ControlOutcome.NOT_FOUND: (404, "The requested invocation '{}' does not exist"),
    ControlOutcome.NOT_COMPLETED: (409, "The invocation '{}' is not yet completed."),
    ControlOutcome.NOT_RUNNING: (409, "The invocation '{}' is not running, cannot be paused."),
    ControlOutcome.NOT_STARTED: (
        425,
        "The invocation '{}' is either inboxed or scheduled, cannot be resumed.",
    ),
}
_RESTART_ERRORS: dict[ControlOutcome, tuple[int, str]] = {
    ControlOutcome.NOT_FOUND: _ERRORS[ControlOutcome.NOT_FOUND],
    ControlOutcome.NOT_STARTED: (
        425,
        "The invocation '{}' cannot be restarted because it's not running yet.",
    ),
    ControlOutcome.STILL_RUNNING: (409, "The invocation '{}' is still running."),
    ControlOutcome.MISSING_INPUT: (
        410,
        "The invocation '{}' cannot be restarted because the input is not available. This "
        "indicates that the journal was already purged, or not retained at all.",
    ),
    ControlOutcome.UNSUPPORTED: (
        422,
        "Restarting the invocation '{}' is not supported. Restarting workflows is not "
        "supported, and restarting invocations created using the old service protocol.",
    ),
}
_COMPLETED = {
    ControlAction.RESUME: "The invocation '{}' is completed, cannot be resumed.",
}
_DELETE_MODES = {
    "cancel": ControlAction.CANCEL,
    "kill": ControlAction.KILL,
    "purge": ControlAction.PURGE,
}


def add_invocation_routes(app: Routes, partition: Partition) -> None:
    for action in ControlAction:
        app.route(
            "PATCH", f"/invocations/{{invocation_id}}/{action.value}", _patch(partition, action)
        )
    app.route("DELETE", "/invocations/{invocation_id}", _delete(partition))
    app.route("PATCH", "/invocations/{invocation_id}/restart-as-new", _restart(partition))


def _invocation_id(req: Request) -> InvocationId:
    text = req.params["invocation_id"]
    try:
        return InvocationId.parse(text)
    except IdError as e:
        raise AdminError(
            400, f"The request field 'invocation_id' is invalid. Reason: {e}"
        ) from None


def _patch(partition: Partition, action: ControlAction) -> Callable[[Request], Awaitable[Response]]:
    async def handle(req: Request) -> Response:
        inv = _invocation_id(req)
        answer = await partition.request(lambda token: Control(inv, action, token))
        outcome = ControlOutcome(answer.outcome)
        status = _SUCCESS[action].get(outcome)
        if status is not None:
            return Response(status)
        if outcome is ControlOutcome.COMPLETED:
            text = _COMPLETED.get(action, "The invocation '{}' was already completed.")
            raise AdminError(409, text.format(inv))
        code, text = _ERRORS[outcome]
        raise AdminError(code, text.format(inv))

    return handle


def _delete(partition: Partition) -> Callable[[Request], Awaitable[Response]]:
    async def handle(req: Request) -> Response:
        inv = _invocation_id(req)
        mode = dict(req.query).get("mode", "cancel")
        action = _DELETE_MODES.get(mode.lower())
        if action is None or mode not in (mode.lower(), mode.capitalize()):
            raise PlainError(
                400,
                f"Failed to deserialize query string: mode: unknown variant `{mode}`, expected "
                "one of `Cancel`, `cancel`, `Kill`, `kill`, `Purge`, `purge`",
            )
        # Committed before the 202, like every acknowledgement here.
        await partition.request(lambda token: Control(inv, action, token), follow=False)
        return Response(202)

    return handle


def _restart(partition: Partition) -> Callable[[Request], Awaitable[Response]]:
    async def handle(req: Request) -> Response:
        inv = _invocation_id(req)
        query = dict(req.query)
        start = query.get("from", "0")
        if not start.isdigit():
            raise PlainError(
                400, f"Failed to deserialize query string: from: invalid digit: {start}"
            )
        if int(start) != 0:
            # Copying a journal prefix into the new invocation is not implemented.
            raise AdminError(
                422,
                f"Restarting the invocation '{inv}' from journal index {start} is not "
                "supported by this server: only 'from=0' (the input alone) is",
            )
        if "deployment" in query:
            raise AdminError(
                422, "The 'deployment' parameter needs 'from' > 0, which is not supported"
            )
        uuid = os.urandom(16)
        answer = await partition.request(lambda token: RestartAsNew(inv, uuid, token))
        outcome = ControlOutcome(answer.outcome)
        if outcome is ControlOutcome.DONE:
            return json_response(200, {"new_invocation_id": str(answer.invocation_id)})
        code, text = _RESTART_ERRORS[outcome]
        raise AdminError(code, text.format(inv))

    return handle
