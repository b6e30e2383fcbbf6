"""Ticket reservations, after the shape of the Restate tour.

A user's cart (`CartObject`, keyed by user id) reserves tickets (`TicketObject`, keyed
by ticket id) and checks out through `CheckoutService`, which charges the user in a
`ctx.run` so the payment happens at most once however often the checkout is retried.
A reservation lasts 15 minutes: adding a ticket sends the cart a delayed
`expireTicket`, which gives the ticket back unless it was bought meanwhile.
"""

from __future__ import annotations

from datetime import timedelta

import restate
from restate import Context, ObjectContext, ObjectSharedContext, TerminalError

AVAILABLE = "AVAILABLE"
RESERVED = "RESERVED"
SOLD = "SOLD"
TICKET_PRICE = 40
RESERVATION = timedelta(minutes=15)

ticket = restate.VirtualObject("TicketObject")


@ticket.handler()
async def reserve(ctx: ObjectContext) -> bool:
    if (await ctx.get("status", type_hint=str) or AVAILABLE) != AVAILABLE:
        return False
    ctx.set("status", RESERVED)
    return True


@ticket.handler()
async def unreserve(ctx: ObjectContext) -> None:
    # A sold ticket stays sold: only a reservation can be given back.
    if (await ctx.get("status", type_hint=str) or AVAILABLE) != SOLD:
        ctx.clear("status")


@ticket.handler(name="markAsSold")
async def mark_as_sold(ctx: ObjectContext) -> None:
    if (await ctx.get("status", type_hint=str) or AVAILABLE) == RESERVED:
        ctx.set("status", SOLD)


@ticket.handler(kind="shared")
async def status(ctx: ObjectSharedContext) -> str:
    return await ctx.get("status", type_hint=str) or AVAILABLE


checkout_service = restate.Service("CheckoutService")


@checkout_service.handler()
async def handle(ctx: Context, req: dict) -> bool:
    tickets: list[str] = req["tickets"]
    total = TICKET_PRICE * len(tickets)
    # Derived from the journal, so every retry presents the same key to the provider.
    idempotency_key = str(ctx.uuid())

    def pay() -> str:
        # Stands in for a call to a payment provider.
        if total <= 0:
            raise TerminalError("nothing to pay for", status_code=400)
        return f"payment-{idempotency_key}-{req['userId']}-{total}"

    await ctx.run_typed("payment", pay)
    return True


cart = restate.VirtualObject("CartObject")


@cart.handler(name="addTicket")
async def add_ticket(ctx: ObjectContext, ticket_id: str) -> bool:
    reserved = await ctx.object_call(reserve, key=ticket_id, arg=None)
    if reserved:
        tickets = await ctx.get("tickets", type_hint=list) or []
        tickets.append(ticket_id)
        ctx.set("tickets", tickets)
        ctx.object_send(expire_ticket, key=ctx.key(), arg=ticket_id, send_delay=RESERVATION)
    return reserved


@cart.handler(name="expireTicket")
async def expire_ticket(ctx: ObjectContext, ticket_id: str) -> None:
    tickets = await ctx.get("tickets", type_hint=list) or []
    if ticket_id in tickets:
        tickets.remove(ticket_id)
        ctx.set("tickets", tickets)
        ctx.object_send(unreserve, key=ticket_id, arg=None)


@cart.handler()
async def checkout(ctx: ObjectContext) -> bool:
    tickets = await ctx.get("tickets", type_hint=list) or []
    if not tickets:
        return False
    paid = await ctx.service_call(handle, arg={"userId": ctx.key(), "tickets": tickets})
    if not paid:
        return False
    for ticket_id in tickets:
        await ctx.object_call(mark_as_sold, key=ticket_id, arg=None)
    ctx.clear("tickets")
    return True


@cart.handler(name="getTickets", kind="shared")
async def get_tickets(ctx: ObjectSharedContext) -> list:
    return await ctx.get("tickets", type_hint=list) or []


app = restate.app(services=[cart, ticket, checkout_service])
