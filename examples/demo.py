"""The README quick-start: a greeter service and a per-name visit counter.

    hypercorn examples.demo:app --bind 127.0.0.1:9080
    curl localhost:9070/deployments -H 'content-type: application/json' \\
        -d '{"uri": "http://127.0.0.1:9080"}'
    curl localhost:8080/Greeter/greet -H 'content-type: application/json' -d '"Ada"'
    curl -X POST localhost:8080/Visits/Ada/visit
"""

from __future__ import annotations

import restate
from restate import Context, ObjectContext

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: Context, name: str) -> str:
    return f"Hello, {name}!"


visits = restate.VirtualObject("Visits")


@visits.handler()
async def visit(ctx: ObjectContext) -> str:
    count = (await ctx.get("count", type_hint=int) or 0) + 1
    ctx.set("count", count)
    return f"Welcome, {ctx.key()}: visit number {count}."


app = restate.app(services=[greeter, visits])
