"""Web push on the chat page: our VAPID public key (for `pushManager.subscribe`), a
verified session's browser subscription, and the service worker itself (served under
`/chat/` so its scope is the chat page). A session not verified gets no subscription
kept: a browser proves nothing about who the customer is. An endpoint on a push
service the operator does not allow is a 422 naming it: we post nowhere a browser says.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from app.channels.webpush import subscriptions, vapid
from deployments.deps import Context
from deployments.routes.chat import SessionToken, verified_customer
from deployments.routes.pages import STATIC

router = APIRouter(tags=["push"])


class PushKey(BaseModel):
    public_key: str = Field(description="our VAPID public key: the applicationServerKey")


class Subscribed(BaseModel):
    ok: bool


@router.get("/push-sw.js", include_in_schema=False)
async def service_worker() -> FileResponse:
    return FileResponse(STATIC / "push-sw.js", media_type="text/javascript",
                        headers={"Service-Worker-Allowed": "/chat/",
                                 "Cache-Control": "no-cache"})


@router.get("/api/push/key", response_model=PushKey)
async def push_key(context: Context) -> dict:
    """The key a browser subscribes with."""
    return {"public_key": (await vapid.ensure(context.db)).public_key}


@router.post("/api/sessions/{session_id}/push-subscription", response_model=Subscribed,
             responses={409: {"description": "the session is not verified"},
                        422: {"description": "not a subscription, or a push service we "
                                             "do not allow"}})
async def subscribe(session_id: str, body: subscriptions.PushSubscription,
                    context: Context, authorization: SessionToken = None) -> dict:
    """Keep a verified customer's browser subscription: offers and campaigns may then
    reach them by notification."""
    customer_id = await verified_customer(context, session_id, authorization,
                                          "notifications")
    if not subscriptions.endpoint_allowed(body.endpoint, context.settings.webpush_services,
                                          context.endpoints.local_push):
        raise HTTPException(422, [{"field": "body.endpoint",
                                   "message": "not on a push service this operator allows"}])
    await subscriptions.keep(context.db, customer_id, body)
    return {"ok": True}
