"""`/unsubscribe/{token}`: the link in every campaign email (and RFC 8058 one-click).

GET only asks: mail scanners and link previews fetch every link of a message, so a GET
that unsubscribed would unsubscribe customers who never clicked. The page's button
POSTs to the same URL, as mail clients' one-click unsubscribe (RFC 8058) does."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from actors.webhook_sender import hand_on
from app.audience.customers import set_unsubscribed
from app.core.runtime import Runtime
from deployments.deps import Context
from deployments.routes.pages import link_customer, link_question, notice

router = APIRouter(tags=["unsubscribe"])


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_page(context: Context, request: Request, token: str) -> HTMLResponse:
    """The link in the email: asks to confirm (changes nothing)."""
    return await link_question(context, request, token, Runtime.customer_from_token,
                               "unsubscribe", title="Unsubscribe?", button="Unsubscribe",
                               text="You will receive no more campaign emails from us.")


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(context: Context, request: Request, token: str) -> HTMLResponse:
    """Unsubscribe: the page's button, and RFC 8058 one-click from mail clients."""
    customer_id, refused = await link_customer(context, request, token,
                                               Runtime.customer_from_token, "unsubscribe")
    if refused is not None:
        return refused
    if not await set_unsubscribed(context.db, customer_id, via="link"):
        return notice("Link not valid", "This unsubscribe link is not valid.", 404)
    await hand_on(context.db, "customers", customer_id)  # the event stored with the change
    return notice("You are unsubscribed",
                  "You will not receive campaign emails from us again.")
