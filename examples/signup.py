"""User signup as a workflow, after the shape of Restate's "Tour of Workflows".

`run` creates the user, mails a verification link and waits on the durable promise
"email-link" until the shared handler `click` resolves it with the link's secret; the
shared `status` reads the workflow's state at any time, also while `run` waits.
`ShortSignup` is the same workflow kept only 2 s after it ends; `Reminder` sleeps
durably before it answers.

What really executed is counted in files (see durability.py); the "mail" is a file
holding the secret, where a test reads it as a user would read the email.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import restate
from restate import TerminalError, WorkflowContext, WorkflowSharedContext

from examples.durability import COUNT_DIR_ENV, _record


def mail_path(count_dir: Path, user: str) -> Path:
    """Where the verification mail to ``user`` lands."""
    return count_dir / f"mail-{user}.txt"


def _signup(workflow: restate.Workflow, retention: timedelta | None = None) -> None:
    """The signup handlers, on ``workflow``."""

    @workflow.main(workflow_retention=retention)
    async def run(ctx: WorkflowContext, email: str) -> dict:
        user = ctx.key()

        def create_user() -> None:
            _record(f"created-{user}.log", email)

        await ctx.run_typed("create user", create_user)
        ctx.set("status", "created")
        secret = str(ctx.uuid())

        def send_mail() -> None:
            mail_path(Path(os.environ[COUNT_DIR_ENV]), user).write_text(secret)

        await ctx.run_typed("send mail", send_mail)
        ctx.set("status", "waiting for the email link")
        try:
            clicked = await ctx.promise("email-link", type_hint=str).value()
        except TerminalError:
            # Cancelled while waiting: the compensation marks the signup abandoned.
            ctx.set("status", "abandoned")
            raise
        verified = clicked == secret
        ctx.set("status", "verified" if verified else "wrong link")
        return {"user": user, "verified": verified}

    @workflow.handler()
    async def click(ctx: WorkflowSharedContext, secret: str) -> str:
        await ctx.promise("email-link", type_hint=str).resolve(secret)
        return "thanks"

    @workflow.handler()
    async def status(ctx: WorkflowSharedContext) -> str:
        return await ctx.get("status", type_hint=str) or "unknown"

    @workflow.handler(name="peekLink")
    async def peek_link(ctx: WorkflowSharedContext) -> str | None:
        return await ctx.promise("email-link", type_hint=str).peek()


signup = restate.Workflow("SignupWorkflow")
_signup(signup)
short_signup = restate.Workflow("ShortSignup")
_signup(short_signup, retention=timedelta(seconds=2))

reminder = restate.Workflow("Reminder")


@reminder.main(name="run")
async def remind(ctx: WorkflowContext, millis: int) -> str:
    ctx.set("status", "sleeping")
    await ctx.sleep(timedelta(milliseconds=millis))

    def ring() -> None:
        _record(f"rang-{ctx.key()}.log", "ring")

    await ctx.run_typed("ring", ring)
    ctx.set("status", "rang")
    return f"reminded {ctx.key()}"


@reminder.handler(name="status")
async def reminder_status(ctx: WorkflowSharedContext) -> str:
    return await ctx.get("status", type_hint=str) or "unknown"


app = restate.app(services=[signup, short_signup, reminder])
