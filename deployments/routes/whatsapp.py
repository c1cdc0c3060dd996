"""The WhatsApp webhook (public): the Cloud API's subscription handshake, and the
notifications it posts (customers' messages, our messages' statuses).

`GET` answers the handshake's challenge only for our verify token (else 403). A `POST`
is the Cloud API's only with `X-Hub-Signature-256` over the raw body under the app's
secret (else 401, and nothing is parsed or stored); the body is bounded like every
other (`deployments.limits`). What it holds is stored before the 200 (customers'
messages in `app.channels.inbox`, statuses in `app.campaigns.statuses`), then each
number's waiting messages are taken in order and answered, and the stored statuses
applied to their deliveries.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, ValidationError

from actors.metrics import FunnelMetrics
from app.channels import statuses as channel_statuses
from app.channels.whatsapp.channel import cloud_login
from app.channels.whatsapp.webhook import (
    SIGNATURE_HEADER,
    Notification,
    genuine,
    inbound,
    statuses,
    verified,
)
from app.chat import whatsapp_chat
from app.chat.flow_engine import load_flow
from app.chat.sms_chat import Keywords
from app.chat.whatsapp_chat import CHANNEL
from deployments.context import UNKNOWN_KID_RELOAD_S
from deployments.deps import Context

router = APIRouter(tags=["whatsapp"])
FLOW = load_flow()


class Taken(BaseModel):
    ok: bool = Field(description="the notification is stored (and its turns taken)")


_JSON_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/InvalidInput"}}}


@router.get("/whatsapp/webhook", response_class=PlainTextResponse, responses={
    403: {"description": "not our verify token", "content": {"application/json": {}}},
    422: {"description": "Bad input: each problem names its field", "content": _JSON_ERROR}})
async def whatsapp_handshake(
        context: Context,
        mode: str | None = Query(default=None, alias="hub.mode", max_length=32),
        token: str | None = Query(default=None, alias="hub.verify_token", max_length=256),
        challenge: str = Query(default="", alias="hub.challenge", max_length=64,
                               pattern=r"^[A-Za-z0-9_-]*$")) -> str:
    """The Cloud API's subscription handshake: the challenge, for our verify token."""
    runtime = await context.runtime_for("links")
    if not verified(mode, token, runtime.keys) and (
            time.monotonic() - context.keys_loaded > UNKNOWN_KID_RELOAD_S):
        context.keys_loaded = float("-inf")  # a token of a key made since: look again
        runtime = await context.runtime_for("links")  # (at most once a second)
    if not verified(mode, token, runtime.keys):
        raise HTTPException(403, "hub.verify_token does not match")
    return challenge


@router.post("/whatsapp/webhook", response_model=Taken,
             responses={401: {"description": "not signed with the app's secret"}})
async def whatsapp_webhook(request: Request, context: Context) -> dict:
    """A notification from the Cloud API: stored, then its turns taken and answered and
    its statuses applied."""
    body = await request.body()
    secret = context.settings.whatsapp_secret(context.endpoints.local_whatsapp_secret)
    if not genuine(body, request.headers.get(SIGNATURE_HEADER), secret):
        raise HTTPException(401, f"{SIGNATURE_HEADER} does not match")
    try:
        notification = Notification.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])}
                                      for error in exc.errors()]) from None
    messages, reported = inbound(notification), statuses(notification)
    seq = time.time_ns()
    for n, message in enumerate(messages):
        await whatsapp_chat.store(context.db, message, seq + n)
    reported = [s for s in reported if s.delivery_id]  # a campaign message's (the bot's
    await channel_statuses.store(context.db, CHANNEL, [  # replies and offers: not kept)
        channel_statuses.ChannelStatus(s.message_id, s.status, s.at, s.delivery_id,
                                       s.error_code, s.error)
        for s in reported if s.delivery_id])
    keywords = Keywords.of(context.settings)
    login = cloud_login(context.settings, context.endpoints)
    consumers = context.conversations.consumers if context.conversations else {}
    for wa_id in dict.fromkeys(message.wa_id for message in messages):
        await whatsapp_chat.take_waiting(context.db, FLOW, wa_id, consumers, keywords, login)
    if reported:
        _applier(context).soon()
    return {"ok": True}


_appliers: dict[int, channel_statuses.Applier] = {}


def _applier(context: Context) -> channel_statuses.Applier:
    """This replica's round-maker for WhatsApp statuses."""
    found = _appliers.get(id(context.db))
    if found is None:
        found = _appliers[id(context.db)] = channel_statuses.Applier(
            context.db, CHANNEL,
            on_applied=lambda counts: FunnelMetrics.get().count(CHANNEL, counts))
    return found
