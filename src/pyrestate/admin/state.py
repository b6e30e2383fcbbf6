"""``POST /services/{service}/state``: an operator replaces a virtual object's state.

The change is committed before the 202; it is applied when the object's key is free
(after the invocations ahead of it) and dropped if ``version`` no longer matches the
state, as the official server does. The CLI's ``kv edit`` and ``kv clear`` use it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pyrestate.admin.errors import AdminError, ServiceNotFound
from pyrestate.admin.registry import Registry
from pyrestate.admin.web import PlainError, Request, Response, read_json_body
from pyrestate.core.commands import MutateState
from pyrestate.partition.processor import Answer

Handler = Callable[[Request], Awaitable[Response]]


class Partition(Protocol):
    async def request(self, make: Callable[[int], MutateState], follow: bool = True) -> Answer: ...


class Routes(Protocol):
    def route(self, method: str, path: str, handler: Handler) -> None: ...


class RegistryHolder(Protocol):
    current: Registry


def add_state_routes(app: Routes, partition: Partition, registry: RegistryHolder) -> None:
    app.route("POST", "/services/{service}/state", _modify_state(partition, registry))


def _refuse(reason: str) -> PlainError:
    return PlainError(422, f"Failed to deserialize the JSON body into the target type: {reason}")


def parse_state_request(value: Any) -> tuple[str, tuple[tuple[bytes, bytes], ...], str | None]:
    """(object key, new state, expected version) of a request body."""
    if not isinstance(value, dict):
        raise _refuse("invalid type: expected struct ModifyServiceStateRequest")
    key = value.get("object_key")
    if not isinstance(key, str):
        raise _refuse(
            "missing field `object_key`" if key is None else "object_key: expected a string"
        )
    version = value.get("version")
    if version is not None and not isinstance(version, str):
        raise _refuse("version: expected a string")
    new_state = value.get("new_state")
    if not isinstance(new_state, dict):
        raise _refuse(
            "missing field `new_state`" if new_state is None else "new_state: expected a map"
        )
    entries = []
    for name, raw in new_state.items():
        # Values are byte arrays: lists of numbers 0..255.
        if not isinstance(raw, list) or not all(
            isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in raw
        ):
            raise _refuse(f"new_state.{json.dumps(name)}: expected a sequence of bytes")
        entries.append((name.encode(), bytes(raw)))
    return key, tuple(entries), version


def _modify_state(partition: Partition, registry: RegistryHolder) -> Handler:
    async def handle(req: Request) -> Response:
        service = req.params["service"]
        key, state, version = read_json_body(req, parse_state_request)
        try:
            svc = registry.current.service(service)
        except ServiceNotFound:
            # A removed service's state may still be cleared.
            if state:
                raise AdminError(404, f"The requested service '{service}' does not exist") from None
        else:
            if svc.ty == "Service":
                raise AdminError(400, "Cannot modify state for service type Service")
        await partition.request(lambda token: MutateState(service, key, state, version, token))
        return Response(202)

    return handle
