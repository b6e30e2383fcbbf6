"""Event enrichment: package locations from a Kafka topic, joined with what was
registered over HTTP, queried over HTTP.

`registerPackage` is called over HTTP when a package is shipped; the
`package-location-updates` topic (record key: the package id) feeds `updateLocation`
through a subscription; `getPackageInfo` answers with the package and every location it
passed, in the order the updates were published.

    curl localhost:8080/PackageTracker/pkg-1/registerPackage \
        --json '{"finalDestination": "Bridge 6, Amsterdam"}'
    curl localhost:9070/subscriptions --json '{"source": "kafka://my-cluster/package-location-updates",
        "sink": "service://PackageTracker/updateLocation"}'
    curl localhost:8080/PackageTracker/pkg-1/getPackageInfo
"""

from __future__ import annotations

import restate
from restate import ObjectContext, ObjectSharedContext, TerminalError

tracker = restate.VirtualObject("PackageTracker")


@tracker.handler(name="registerPackage")
async def register_package(ctx: ObjectContext, info: dict) -> None:
    ctx.set("package", {**info, "locations": []})


@tracker.handler(name="updateLocation")
async def update_location(ctx: ObjectContext, update: dict) -> None:
    package = await ctx.get("package", type_hint=dict)
    if package is None:
        # Not retried: the update is recorded as failed and the next one proceeds.
        raise TerminalError(f"package {ctx.key()} not found")
    package["locations"].append(update)
    ctx.set("package", package)


@tracker.handler(name="getPackageInfo", kind="shared")
async def get_package_info(ctx: ObjectSharedContext) -> dict:
    package = await ctx.get("package", type_hint=dict)
    if package is None:
        raise TerminalError(f"package {ctx.key()} not found", status_code=404)
    return package


app = restate.app(services=[tracker])
