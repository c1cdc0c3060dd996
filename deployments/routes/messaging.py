"""Messaging-app routes of local mode: what the bot sent on the embedded Telegram Bot
API and WhatsApp Cloud API servers, and a customer's message typed in by hand, which
the provider delivers to our webhook as a real one would (the console's outbox panel).
Operators simulate; viewers read. Without the embedded provider: 404."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from app.audience.phones import e164
from app.core.models import Reply, Strict
from app.integrations.models import Outbox
from deployments.deps import Context, Signed

router = APIRouter(prefix="/messaging", tags=["messaging"], dependencies=[Signed])
App = Literal["telegram", "whatsapp"]


class InboundMessage(Strict):
    sender: str = Field(min_length=1, max_length=40, description=(
        "Telegram: the customer's chat id; WhatsApp: their number (E.164, or national "
        "in COMMS_DEFAULT_REGION)"))
    text: str = Field(min_length=1, max_length=4096)


class InboundTaken(Reply):
    sender: str
    message_id: str


def _services(context: Context, app: str):
    local = (context.endpoints.local_telegram if app == "telegram"
             else context.endpoints.local_whatsapp)
    if context.local_services is None or not local:
        raise HTTPException(404, f"no embedded {app} provider: it is a real one")
    return context.local_services


def _address(context: Context, app: str, sender: str) -> str:
    try:
        if app == "telegram":
            return str(int(sender))
        return e164(sender, context.settings.default_region).lstrip("+")
    except ValueError as exc:
        raise HTTPException(422, [{"field": "body.sender", "message": str(exc)}]) from None


@router.post("/{app}/simulate-inbound", status_code=202, response_model=InboundTaken)
async def simulate_inbound(context: Context, app: App, body: InboundMessage) -> dict:
    """Local mode: the customer `sender` writes to the bot; the provider posts it to our
    webhook, and the bot answers there."""
    services = _services(context, app)
    sender = _address(context, app, body.sender)
    if app == "telegram":
        message_id = await services.telegram_say.remote(int(sender), body.text)
    else:
        await services.whatsapp_register.remote(sender)
        message_id = await services.whatsapp_say.remote(sender, body.text)
    return {"sender": sender, "message_id": str(message_id)}


@router.get("/{app}/outbox", response_model=Outbox, response_model_exclude_unset=True)
async def outbox(context: Context, app: App,
                 to: str | None = Query(default=None, max_length=40),
                 limit: int = Query(default=100, ge=1, le=1000)) -> dict:
    """Local mode: what the bot (or the campaigns) sent there, newest first; `to` is a
    chat id or number."""
    services = _services(context, app)
    if app == "telegram":
        sent = await services.telegram_sent.remote(int(to) if to and to.isdigit() else None)
        shown = [{"at": m["date"], "to": str(m["chat"]["id"]), "text": m["text"],
                  "options": [row[0]["text"] for row in m.get("reply_markup", {}).get(
                      "inline_keyboard", [])]} for m in sent]
    else:
        sent = await services.whatsapp_sent.remote(to.lstrip("+") if to else None)
        shown = [{"at": m.get("at"), "to": m["to"], "text": m.get("text", ""),
                  "options": [o["title"] for o in m.get("options", [])],
                  **({"template": m["template"]} if m.get("template") else {})}
                 for m in sent]
    shown.sort(key=lambda m: m["at"] or 0, reverse=True)
    return {"total": len(sent), "matched": len(shown), "messages": shown[:limit]}
