"""Transactional event processing: a user's feed, updated from a Kafka topic of posts.

A subscription feeds the `social-media-posts` topic into `UserFeed/processPost`; the
record key is the user id, so each user's posts are processed one at a time, in the order
they were published. Each post is checked by a (simulated) moderation service in a
`ctx.run`, then appended to the user's feed: state and steps are journaled, so a crash
anywhere neither loses a post nor adds one twice.

    curl localhost:9070/subscriptions --json '{"source": "kafka://my-cluster/social-media-posts",
        "sink": "service://UserFeed/processPost", "options": {"auto.offset.reset": "earliest"}}'
    curl localhost:8080/UserFeed/alice/feed
"""

from __future__ import annotations

import restate
from restate import ObjectContext, ObjectSharedContext

feed = restate.VirtualObject("UserFeed")

BLOCKED_WORDS = frozenset({"spam"})


def moderate(content: str) -> str:
    """The moderation service's verdict on a post."""
    return "rejected" if BLOCKED_WORDS & set(content.lower().split()) else "published"


@feed.handler(name="processPost")
async def process_post(ctx: ObjectContext, post: dict) -> None:
    content = str(post.get("content", ""))
    verdict = await ctx.run_typed("moderate", moderate, content=content)
    posts = await ctx.get("posts", type_hint=list) or []
    posts.append({"seq": post.get("seq"), "status": verdict})
    ctx.set("posts", posts)
    # Where the post came from, as the server passed it: the record's topic partition.
    headers = ctx.request().headers
    ctx.set("last_offset", {k: headers.get(k) for k in ("kafka.partition", "kafka.offset")})


@feed.handler(name="feed", kind="shared")
async def feed_of(ctx: ObjectSharedContext) -> list:
    return await ctx.get("posts", type_hint=list) or []


@feed.handler(name="source", kind="shared")
async def source_of(ctx: ObjectSharedContext) -> dict:
    return await ctx.get("last_offset", type_hint=dict) or {}


app = restate.app(services=[feed])
