"""`/unsubscribe/{token}`: the link in every campaign email (and RFC 8058 one-click).

GET only asks: mail scanners and link previews fetch every link of a message, so a GET
that unsubscribed would unsubscribe customers who never clicked. The page's button
POSTs to the same URL, as mail clients' one-click unsubscribe (RFC 8058) does."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from actors.webhook_sender import hand_on
from app.customers import set_unsubscribed
from deployments.deps import Context
from deployments.limits import retry_after

router = APIRouter(tags=["unsubscribe"])

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body class="notice"><main><h1>{title}</h1><p>{text}</p>{form}</main></body></html>"""
FORM = """<form method="post"><button type="submit">Unsubscribe</button></form>"""


def _page(title: str, text: str, status: int = 200, form: str = "",
          headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(PAGE.format(title=title, text=text, form=form), status,
                        headers=headers)


def _limited(context: Context, request: Request) -> HTMLResponse | None:
    limits = context.limits
    wait = limits.unsubscribe.check(limits.client_address(request))
    if wait > 0:
        return _page("Too many requests", "Please try again in a minute.", 429,
                     headers={"Retry-After": str(retry_after(wait))})
    return None


def _not_valid() -> HTMLResponse:
    return _page("Link not valid", "This unsubscribe link is not valid.", 404)


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_page(context: Context, request: Request, token: str) -> HTMLResponse:
    """The link in the email: asks to confirm (changes nothing)."""
    refused = _limited(context, request)
    if refused is not None:
        return refused
    if context.runtime.customer_from_token(token) is None:
        return _not_valid()
    return _page("Unsubscribe?", "You will receive no more campaign emails from us.",
                 form=FORM)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe(context: Context, request: Request, token: str) -> HTMLResponse:
    """Unsubscribe: the page's button, and RFC 8058 one-click from mail clients."""
    refused = _limited(context, request)
    if refused is not None:
        return refused
    customer_id = context.runtime.customer_from_token(token)
    if customer_id is None or not await set_unsubscribed(context.db, customer_id, via="link"):
        return _not_valid()
    await hand_on(context.db, "customers", customer_id)  # the event stored with the change
    return _page("You are unsubscribed", "You will not receive campaign emails from us again.")
