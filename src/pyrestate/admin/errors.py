"""Errors of the admin API and of registry lookups, with the official server's texts."""

from __future__ import annotations

from typing import Any


class AdminError(Exception):
    """An error the admin API answers as ``{"message": ..., "restate_code": ...}``."""

    def __init__(self, status: int, message: str, restate_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.restate_code = restate_code

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "restate_code": self.restate_code}


def schema_error(status: int, message: str, code: str | None = None) -> AdminError:
    """A registration refused by the schema rules; the official prefixes the code once."""
    return AdminError(status, f"[{code}] {message}" if code else message, code)


class ServiceNotFound(LookupError):
    def __init__(self, service: str) -> None:
        super().__init__(
            f"service '{service}' not found, make sure to register the service before calling it."
        )
        self.service = service


class HandlerNotFound(LookupError):
    def __init__(self, service: str, handler: str) -> None:
        super().__init__(
            f"the service '{service}' exists, but the handler '{handler}' was not found, "
            "check that the handler exists in the latest registered service version."
        )
        self.service = service
        self.handler = handler


class DeploymentNotFound(LookupError):
    def __init__(self, deployment_id: str) -> None:
        super().__init__(f"The requested deployment '{deployment_id}' does not exist")
        self.deployment_id = deployment_id
