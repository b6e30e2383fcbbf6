"""What every page handler gets: the admin API (in-process) and the ingress address."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pyrestate.admin.in_process import AdminApi, ApiError
from pyrestate.ui.html import UiError

# Service types as the admin API names them, and as the pages do.
SERVICE_TYPES = {"Service": "service", "VirtualObject": "virtual object", "Workflow": "workflow"}


@dataclass(frozen=True, slots=True)
class Ui:
    api: AdminApi
    ingress_url: str | None  # where the playground sends requests; None: not known

    async def services(self) -> list[dict[str, Any]]:
        services = (await self.api.get("/services"))["services"]
        return sorted(services, key=lambda s: s["name"])

    async def service(self, name: str) -> dict[str, Any]:
        """The admin API's description of a service; UiError 404 if there is none."""
        try:
            return await self.api.get(f"/services/{quote(name, safe='')}")
        except ApiError as e:
            if e.status == 404:
                raise UiError(
                    404, "No such service", f"there is no service named '{name}'"
                ) from None
            raise

    async def keyed_service(self, name: str) -> dict[str, Any]:
        """A virtual object or workflow (those have keys, state and promises)."""
        svc = await self.service(name)
        if svc["ty"] == "Service":
            raise UiError(400, "Not keyed", f"'{name}' is a service, which has no keys or state")
        return svc
