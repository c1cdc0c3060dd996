"""The Telegram webhook (public): the Bot API posts each update of our bot here.

An update is ours only with the secret header we gave `setWebhook` (else 401, and
nothing is read or stored); it is stored before it is answered (`app.channels.inbox`),
then its chat's waiting updates are taken in order (`app.chat.telegram_chat`) and the
bot's answers sent back through the Bot API. The body is bounded like every
other (`deployments.limits`); a malformed update is a 422 naming the field.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from app.channels import inbox
from app.channels.telegram.channel import bot_login
from app.channels.telegram.updates import SECRET_HEADER, Update, genuine, inbound
from app.chat import telegram_chat
from app.chat.flow_engine import load_flow
from app.chat.telegram_chat import CHANNEL
from deployments.deps import Context

router = APIRouter(tags=["telegram"])
FLOW = load_flow()


class Taken(BaseModel):
    ok: bool = Field(description="the update is stored (and its chat's turns taken)")


@router.post("/telegram/webhook", response_model=Taken,
             responses={401: {"description": "not our bot's webhook"}})
async def telegram_webhook(request: Request, context: Context) -> dict:
    """One update from the Bot API: stored, then its chat's turns taken and answered."""
    runtime = await context.runtime_for("links")
    if not genuine(request.headers.get(SECRET_HEADER), runtime.keys):
        raise HTTPException(401, f"{SECRET_HEADER} does not match")
    body = await request.body()
    try:
        update = Update.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError([{**error, "loc": ("body", *error["loc"])}
                                      for error in exc.errors()]) from None
    taken = inbound(update)
    if taken is None:
        return {"ok": True}  # (a group's message, a sticker: nothing for the bot)
    await inbox.store(context.db, CHANNEL, str(update.update_id), str(taken.chat_id),
                      update.update_id, update.model_dump(mode="json", by_alias=True,
                                                          exclude_unset=True))
    await telegram_chat.take_waiting(
        context.db, FLOW, taken.chat_id, runtime.keys,
        context.conversations.consumers if context.conversations else {},
        bot_login(context.settings, context.endpoints))
    return {"ok": True}
