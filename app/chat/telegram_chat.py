"""The chatbot over Telegram: a private chat with the bot is a conversation
(`app.chat.channel_chat`, keyed by the chat id), its questions' options inline
buttons, a press taken as the option's number. The webhook stores each update
(`app.channels.inbox`); `take_waiting` takes the chat's stored updates in order and
sends the answers.

Identity is proven, never typed: a chat is tied to a customer only by `/start
<parameter>` from a deep link we signed (`app.channels.telegram.linking`: an email, a
verified web chat gives it), which stores the chat id on the customer (taken off any
other), lifts a Telegram suppression of that chat (the customer's own opt-in) and
starts a new conversation as them. A chat never tied is a conversation with nobody in
particular. `/start` alone starts a new conversation. A customer who blocks the bot is
suppressed for Telegram (campaigns skip them), and lifted if they unblock it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase
from telegram.error import TelegramError

from app.audience import suppressions
from app.channels import inbox
from app.channels.telegram import linking
from app.channels.telegram.api import SENT, BotLogin, TelegramMessage, TelegramSender
from app.channels.telegram.updates import BLOCKED, UNBLOCKED, Inbound, Update, inbound
from app.chat import channel_chat
from app.chat.channel_chat import Consumer
from app.chat.flow_engine import Flow
from app.core.signing_keys import KeyRing

log = logging.getLogger("operator_comms.telegram")
CHANNEL = "telegram"


@dataclass(frozen=True)
class Reply:
    """The bot's answer to a chat: text, and the last question's options as buttons."""

    chat_id: int
    text: str
    options: tuple[str, ...] = ()


def render(chat_id: int, docs: list[dict]) -> Reply | None:
    """The bot's messages of a turn as one Telegram message (None: nothing to say)."""
    turn = channel_chat.said(docs)
    return Reply(chat_id, *turn) if turn is not None else None


async def customer_of_chat(db: AsyncDatabase, chat_id: int) -> str | None:
    customer = await db.customers.find_one({"telegram.chat_id": str(chat_id)}, {"_id": 1})
    return customer["_id"] if customer else None


async def link(db: AsyncDatabase, chat_id: int, customer_id: str) -> bool:
    """Tie the chat to the customer (and to nobody else); False if no such customer."""
    address = str(chat_id)
    await db.customers.update_many({"telegram.chat_id": address, "_id": {"$ne": customer_id}},
                                   {"$unset": {"telegram": ""}})
    done = await db.customers.update_one({"_id": customer_id}, {"$set": {
        "telegram": {"chat_id": address, "linked_at": datetime.now(UTC)}}})
    if done.matched_count:
        await suppressions.lift(db, CHANNEL, address)
    return done.matched_count == 1


async def take_waiting(db: AsyncDatabase, flow: Flow, chat_id: int, keys: KeyRing,
                       consumers: dict[str, Consumer], login: BotLogin) -> None:
    """Take the chat's stored updates not taken yet, in order (`app.channels.inbox`),
    and send the bot's answers (a pressed button is acknowledged first)."""
    sender = TelegramSender(login)
    for doc in await inbox.claim_waiting(db, CHANNEL, str(chat_id)):
        waiting = inbound(Update.model_validate(doc["update"]))
        if waiting is None:
            continue
        reply = await take(db, flow, waiting, keys, consumers)
        if waiting.callback_id is not None:
            try:
                await sender.bot.answer_callback_query(waiting.callback_id)
            except TelegramError:
                log.info("update %s: the button press was not acknowledged", doc["_id"])
        if reply is not None:
            outcome = await sender.send(TelegramMessage(reply.chat_id, reply.text,
                                                        f"turn:{doc['_id']}", reply.options))
            if outcome.status != SENT:
                log.warning("update %s: the answer was not sent (%s %s)", doc["_id"],
                            outcome.code, outcome.error)


async def take(db: AsyncDatabase, flow: Flow, update: Inbound, keys: KeyRing,
               consumers: dict[str, Consumer]) -> Reply | None:
    """Take one update; the answer to send back, if any."""
    address = str(update.chat_id)
    if update.kind == BLOCKED:
        await suppressions.suppress(db, [suppressions.Entry(
            CHANNEL, address, suppressions.BLOCKED, {"update": update.update_id})])
        return None
    if update.kind == UNBLOCKED:
        await suppressions.lift(db, CHANNEL, address)
        return None
    text = update.text
    if text == "/start" or update.start_parameter is not None:
        parameter = update.start_parameter
        customer_id = linking.customer_of(parameter, keys) if parameter else None
        if parameter and customer_id is None:
            log.info("chat %s: a start parameter we did not sign", update.chat_id)
        if customer_id is not None and not await link(db, update.chat_id, customer_id):
            customer_id = None
        await channel_chat.forget(db, CHANNEL, address)  # a new conversation, as them
        text = ""

    async def customer_id_now() -> str | None:
        return await customer_of_chat(db, update.chat_id)

    _session, docs = await channel_chat.converse_on(db, flow, channel_chat.Conversation(
        CHANNEL, address, {"email": None, "phone": None, "telegram": address},
        customer_id_now), text, consumers)
    return render(update.chat_id, docs)
