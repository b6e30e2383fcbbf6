"""The overview: services with their handlers, deployments, invocations by status."""

from __future__ import annotations

from dataclasses import dataclass

from pyrestate.admin.web import Request, Response
from pyrestate.ui.context import SERVICE_TYPES, Ui
from pyrestate.ui.html import page
from pyrestate.ui.sql import STATUSES, literal

# Counting stops here: past it the page says "10000+" instead of reading all history.
COUNT_CAP = 10_000


@dataclass(frozen=True, slots=True)
class Count:
    status: str
    n: int

    @property
    def shown(self) -> str:
        return f"{COUNT_CAP}+" if self.n > COUNT_CAP else str(self.n)


async def status_counts(ui: Ui) -> list[Count]:
    """Invocations per status, each count capped (one bounded query per status; a single
    grouped query would read every stored invocation)."""
    counts = []
    for status in STATUSES:
        rows = await ui.api.query(
            "SELECT count(*) AS n FROM (SELECT status FROM sys_invocation "
            f"WHERE status = {literal(status)} LIMIT {COUNT_CAP + 1})"
        )
        counts.append(Count(status, int(rows[0]["n"]) if rows else 0))
    return counts


async def overview(ui: Ui, req: Request) -> Response:
    services = await ui.services()
    deployments = (await ui.api.get("/deployments"))["deployments"]
    return page(
        "overview.html",
        nav="overview",
        services=services,
        types=SERVICE_TYPES,
        deployments=sorted(deployments, key=lambda d: d["created_at"], reverse=True),
        counts=await status_counts(ui),
    )


async def counts_fragment(ui: Ui, req: Request) -> Response:
    """The counts alone, which the overview polls (htmx) to stay current."""
    return page("_counts.html", counts=await status_counts(ui))
