"""Invocation control on the admin API: cancel, kill, purge, pause, resume, restart.

``PATCH /invocations/{id}/{action}`` answers once the partition has committed the
change, with the official status codes and messages; ``DELETE /invocations/{id}?mode=``
is the older form that answers 202 whatever the outcome. Resume and restart-as-new may
move the invocation to another deployment (``?deployment=keep|latest|<id>``).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Protocol

from pyrestate.admin.errors import AdminError
from pyrestate.admin.ids import deployment_id_error
from pyrestate.admin.registry import Registry
from pyrestate.admin.web import PlainError, Request, Response, json_response
from pyrestate.core.commands import (
    KEEP_DEPLOYMENT,
    LATEST_DEPLOYMENT,
    Command,
    Control,
    ControlAction,
    ControlOutcome,
    DeploymentChoice,
    RestartAsNew,
)
from pyrestate.core.ids import IdError, InvocationId
from pyrestate.partition.processor import Answer


class Partition(Protocol):
    async def request(self, make: Callable[[int], Command], follow: bool = True) -> Answer: ...


class RegistryHolder(Protocol):
    current: Registry


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
# Moving an invocation to another deployment (resume and restart-as-new word them alike).
_REPIN_ERRORS: dict[ControlOutcome, tuple[int, str]] = {
    ControlOutcome.CANNOT_REPIN: (
        409,
        "The invocation '{}' is still running or the deployment id is not pinned yet, "
        "deployment id cannot be changed.",
    ),
    ControlOutcome.INCOMPATIBLE_DEPLOYMENT: (
        400,
        "The invocation '{}' is running on protocol version '{}', while the chosen "
        "deployment '{}' supports the range {}..={}.",
    ),
}
_RESTART_ERRORS: dict[ControlOutcome, tuple[int, str]] = {
    **_REPIN_ERRORS,
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
    ControlOutcome.COPY_RANGE_INVALID: (
        400,
        "The prefix of the journal '{}' up to 'from' (included) contains some Commands "
        "without respective Completions.",
    ),
    ControlOutcome.DEPLOYMENT_NOT_FOUND: (
        400,
        "The given deployment was not found when trying to restart as new the invocation '{}'.",
    ),
}
_RESUME_ERRORS: dict[ControlOutcome, tuple[int, str]] = {
    **_REPIN_ERRORS,
    ControlOutcome.DEPLOYMENT_NOT_FOUND: (
        400,
        "The given deployment was not found when trying to resume the invocation '{}'.",
    ),
}
_COMPLETED = {
    ControlAction.RESUME: "The invocation '{}' is completed, cannot be resumed.",
}
_MAX_ENTRY_INDEX = 2**32 - 1  # journal indexes are u32 officially
_DELETE_MODES = {
    "cancel": ControlAction.CANCEL,
    "kill": ControlAction.KILL,
    "purge": ControlAction.PURGE,
}


def add_invocation_routes(app: Routes, partition: Partition, registry: RegistryHolder) -> None:
    for action in ControlAction:
        app.route(
            "PATCH",
            f"/invocations/{{invocation_id}}/{action.value}",
            _patch(partition, action, registry),
        )
    app.route("DELETE", "/invocations/{invocation_id}", _delete(partition))
    app.route("PATCH", "/invocations/{invocation_id}/restart-as-new", _restart(partition, registry))


def _invocation_id(req: Request) -> InvocationId:
    text = req.params["invocation_id"]
    try:
        return InvocationId.parse(text)
    except IdError as e:
        raise AdminError(
            400, f"The request field 'invocation_id' is invalid. Reason: {e}"
        ) from None


def _deployment_choice(req: Request, registry: RegistryHolder, default: str) -> DeploymentChoice:
    """``?deployment=`` (keep, latest or an id) with what the registry knows now."""
    wanted = dict(req.query).get("deployment", default)
    if wanted in ("keep", "Keep"):
        wanted = KEEP_DEPLOYMENT
    elif wanted in ("latest", "Latest"):
        wanted = LATEST_DEPLOYMENT
    else:
        problem = deployment_id_error(wanted)
        if problem is not None:
            raise AdminError(400, f"The query parameter 'deployment' is invalid. Reason: {problem}")
    current = registry.current
    return DeploymentChoice(
        wanted,
        latest={s.name: s.deployment_id for s in current.services()},
        protocols={
            d.id: (d.protocol_version, d.min_protocol_version, d.max_protocol_version)
            for d in current.deployments.values()
        },
    )


def _refusal(
    errors: dict[ControlOutcome, tuple[int, str]],
    inv: InvocationId,
    answer: Answer,
    choice: DeploymentChoice | None,
) -> AdminError:
    outcome = ControlOutcome(answer.outcome)
    code, text = errors[outcome]
    if outcome is ControlOutcome.INCOMPATIBLE_DEPLOYMENT:
        assert answer.pinned is not None and choice is not None
        speaks, deployment = answer.pinned
        _, lowest, highest = choice.protocols[deployment]
        return AdminError(code, text.format(inv, speaks, deployment, lowest, highest))
    return AdminError(code, text.format(inv))


def _patch(
    partition: Partition, action: ControlAction, registry: RegistryHolder
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(req: Request) -> Response:
        inv = _invocation_id(req)
        choice = None
        if action is ControlAction.RESUME and "deployment" in dict(req.query):
            choice = _deployment_choice(req, registry, KEEP_DEPLOYMENT)
        answer = await partition.request(lambda token: Control(inv, action, token, choice))
        outcome = ControlOutcome(answer.outcome)
        status = _SUCCESS[action].get(outcome)
        if status is not None:
            return Response(status)
        if outcome is ControlOutcome.COMPLETED:
            text = _COMPLETED.get(action, "The invocation '{}' was already completed.")
            raise AdminError(409, text.format(inv))
        raise _refusal(_RESUME_ERRORS | _ERRORS, inv, answer, choice)

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


def _restart(
    partition: Partition, registry: RegistryHolder
) -> Callable[[Request], Awaitable[Response]]:
    async def handle(req: Request) -> Response:
        inv = _invocation_id(req)
        start = dict(req.query).get("from", "0")
        if not start.isdigit():
            raise PlainError(
                400, f"Failed to deserialize query string: from: invalid digit: {start}"
            )
        upto = int(start)
        if upto > _MAX_ENTRY_INDEX:
            raise PlainError(
                400,
                "Failed to deserialize query string: from: number too large to fit in target type",
            )
        # Officially the latest deployment unless told otherwise.
        choice = _deployment_choice(req, registry, LATEST_DEPLOYMENT)
        uuid = os.urandom(16)
        answer = await partition.request(lambda token: RestartAsNew(inv, uuid, token, upto, choice))
        if ControlOutcome(answer.outcome) is ControlOutcome.DONE:
            return json_response(200, {"new_invocation_id": str(answer.invocation_id)})
        raise _refusal(_RESTART_ERRORS, inv, answer, choice)

    return handle
