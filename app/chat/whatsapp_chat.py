"""The chatbot over WhatsApp: a customer's number is their conversation
(`app.chat.channel_chat`, keyed by their WhatsApp id), the questions' options reply
buttons (a list beyond three), a press taken as the option's number. The webhook
stores each message (`app.channels.inbox`); `take_waiting` takes the number's stored
messages in order and sends the answers.

Who the customer is: the customer whose phone is the number WhatsApp vouches for (it
verified the number when the account was made), as an SMS's sender number is. Each
message a customer sends opens WhatsApp's 24-hour window for free text, kept on the
customer (`whatsapp.last_inbound_at`) for campaigns and offers. A stop word (the SMS
ones) suppresses the number for WhatsApp, a start word lifts it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

from pymongo.asynchronous.database import AsyncDatabase

from app.audience import suppressions
from app.channels import inbox
from app.channels.whatsapp.api import SENT, CloudLogin, WhatsAppMessage, WhatsAppSender
from app.channels.whatsapp.webhook import Inbound
from app.chat import channel_chat, verification
from app.chat.channel_chat import Consumer
from app.chat.flow_engine import Flow
from app.chat.sms_chat import Keywords, normalise

log = logging.getLogger("operator_comms.whatsapp")
CHANNEL = "whatsapp"
STOP_REPLY = "You will get no more WhatsApp messages from us. Send START to get them again."
START_REPLY = "You will get our WhatsApp messages again. Send STOP to stop."


def phone_of(wa_id: str) -> str:
    return f"+{wa_id}"


async def store(db: AsyncDatabase, message: Inbound, seq: int) -> bool:
    """Keep a customer's message before the Cloud API hears we have it."""
    return await inbox.store(db, CHANNEL, message.message_id, message.wa_id, seq,
                             {**asdict(message), "at": message.at.isoformat()})


async def take_waiting(db: AsyncDatabase, flow: Flow, wa_id: str,
                       consumers: dict[str, Consumer], keywords: Keywords,
                       login: CloudLogin) -> None:
    """Take the number's stored messages not taken yet, in order, and send the bot's
    answers."""
    sender = WhatsAppSender(login)
    for doc in await inbox.claim_waiting(db, CHANNEL, wa_id):
        kept = doc["update"]
        message = Inbound(kept["message_id"], kept["wa_id"], kept["kind"], kept["text"],
                          doc["received_at"])
        reply = await take(db, flow, message, consumers, keywords)
        if reply is None:
            continue
        outcome = await sender.send(reply)
        if outcome.status != SENT:
            log.warning("message %s: the answer was not sent (%s %s)", doc["_id"],
                        outcome.code, outcome.error)


async def take(db: AsyncDatabase, flow: Flow, message: Inbound,
               consumers: dict[str, Consumer], keywords: Keywords) -> WhatsAppMessage | None:
    """Take one message; the answer to send back, if any."""
    wa_id, phone = message.wa_id, phone_of(message.wa_id)
    await db.customers.update_one({"phone": phone}, {"$set": {
        "whatsapp.last_inbound_at": message.at}})  # the 24-hour window opens
    said = normalise(message.text)
    reference = f"turn:{CHANNEL}:{message.message_id}"
    if said in keywords.stop:
        await suppressions.suppress(db, [suppressions.Entry(
            CHANNEL, phone, suppressions.STOP, {"text": message.text[:40]})])
        return WhatsAppMessage(wa_id, reference, text=STOP_REPLY)
    if said in keywords.start:
        await suppressions.lift(db, CHANNEL, phone)
        return WhatsAppMessage(wa_id, reference, text=START_REPLY)

    async def customer_id() -> str | None:
        found = await verification.customer_by_address(db, email=None, phone=phone)
        return found["_id"] if found else None

    _session, docs = await channel_chat.converse_on(db, flow, channel_chat.Conversation(
        CHANNEL, wa_id, {"email": None, "phone": phone, "whatsapp": wa_id}, customer_id),
        message.text, consumers)
    turn = channel_chat.said(docs)
    if turn is None:
        return None
    return WhatsAppMessage(wa_id, reference, text=turn[0], options=turn[1])
