"""`/unsubscribe/{token}`: the link in every campaign email (and RFC 8058 one-click)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from actors.webhook_sender import publish
from app.customers import set_unsubscribed
from deployments.deps import Context
from deployments.limits import retry_after

router = APIRouter(tags=["unsubscribe"])

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body class="notice"><main><h1>{title}</h1><p>{text}</p></main></body></html>"""


async def _unsubscribe(context: Context, request: Request, token: str) -> HTMLResponse:
    limits = context.limits
    wait = limits.unsubscribe.check(limits.client_address(request))
    if wait > 0:
        return HTMLResponse(PAGE.format(title="Too many requests",
                                        text="Please try again in a minute."), 429,
                            headers={"Retry-After": str(retry_after(wait))})
    customer_id = context.runtime.customer_from_token(token)
    if customer_id is None or not await set_unsubscribed(context.db, customer_id):
        return HTMLResponse(PAGE.format(title="Link not valid",
                                        text="This unsubscribe link is not valid."), 404)
    await publish(context.db, "customer.unsubscribed",
                  {"customer_id": customer_id, "via": "link"})
    return HTMLResponse(PAGE.format(title="You are unsubscribed",
                                    text="You will not receive campaign emails from us again."))


@router.get("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_link(context: Context, request: Request, token: str) -> HTMLResponse:
    """The link in the email: unsubscribe and say so."""
    return await _unsubscribe(context, request, token)


@router.post("/unsubscribe/{token}", response_class=HTMLResponse)
async def unsubscribe_one_click(context: Context, request: Request, token: str
                                ) -> HTMLResponse:
    """RFC 8058 one-click unsubscribe, posted by mail clients."""
    return await _unsubscribe(context, request, token)
