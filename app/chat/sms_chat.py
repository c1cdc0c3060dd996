"""The chatbot by SMS: a customer's number is their conversation.

A mobile-originated SMS opens a chat session for its number (linked to the customer
who has that phone) or continues the one it has (`app.chat.channel_chat`; keyed by the number in
E.164). The text goes through the same flow engine as the web chat, so "1", "2" or
an option's words answer the question asked; the bot's messages go back as one SMS,
each question's options as "Reply 1 for Yes, 2 for No". The first message of a new
conversation answers the greeting when it is one of its options (a customer replying
"1" to an SMS that asked), else the greeting is the answer. Events (a refusal, an
acceptance) go to the same consumers as the web chat's, then are stored.

A text that is only a stop word (STOP, PARAR, SAIR, CANCELAR by default) never
reaches the bot: the number is suppressed for SMS (`app.audience.suppressions`) and told
so once; a start word (START, UNSTOP, VOLTAR) lifts that, the customer's own opt-in; a
help word gets the operator's help text.

The session is a chat session like any other (channel `sms`), so the dashboard's chat
panel shows the conversation, and a counter-offer the marketing actor puts in its
inbox also goes out by SMS (`render`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pymongo.asynchronous.database import AsyncDatabase

from app.audience import suppressions
from app.chat import channel_chat, verification
from app.chat.channel_chat import Consumer
from app.chat.flow_engine import Flow, normalise
from app.core.config import Settings

log = logging.getLogger("operator_comms.sms")


def render(docs: list[dict]) -> str:
    """The bot's messages of a turn as one SMS text."""
    lines = []
    for doc in docs:
        if doc["role"] == "customer":
            continue
        text = doc["text"]
        if doc.get("options"):
            text += " Reply " + ", ".join(f"{n} for {label}"
                                          for n, label in enumerate(doc["options"], 1)) + "."
        lines.append(text)
    return "\n".join(lines)


@dataclass(frozen=True)
class Keywords:
    """What a text that is only a keyword does (`Settings.sms_stop_keywords` and friends)."""

    stop: frozenset[str]
    stop_reply: str
    help: frozenset[str]
    help_text: str
    start: frozenset[str] = frozenset()
    start_reply: str = ""

    @classmethod
    def of(cls, settings: Settings) -> Keywords:
        return cls(frozenset(map(normalise, settings.sms_stop_keywords)), settings.sms_stop_reply,
                   frozenset(map(normalise, settings.sms_help_keywords)), settings.sms_help_text,
                   frozenset(map(normalise, settings.sms_start_keywords)),
                   settings.sms_start_reply)


async def inbound(db: AsyncDatabase, flow: Flow, number: str, text: str,
                  consumers: dict[str, Consumer], keywords: Keywords) -> tuple[str, str]:
    """Take a customer's SMS; returns (the answer's reference, the answer to send back,
    empty for none). STOP, START and HELP words are answered before the chatbot sees
    them."""
    said = normalise(text)
    if said in keywords.stop:
        first = await suppressions.suppress(db, [suppressions.Entry(
            "sms", number, suppressions.STOP, {"text": text[:40]})])
        return f"stop:{number}", keywords.stop_reply if first else ""
    if said in keywords.start:
        lifted = await suppressions.lift(db, "sms", number)
        return f"start:{number}", keywords.start_reply if lifted else ""
    if said in keywords.help:
        return f"help:{number}", keywords.help_text
    session_id, answer = await converse(db, flow, number, text, consumers)
    return f"chat:{session_id}", answer


async def converse(db: AsyncDatabase, flow: Flow, number: str, text: str,
                   consumers: dict[str, Consumer]) -> tuple[str, str]:
    """A chat turn by SMS: (its session, the bot's answer)."""
    async def customer_id() -> str | None:
        # The number an SMS comes from is the proof: the SMSC vouches for it.
        customer = await verification.customer_by_address(db, email=None, phone=number)
        return customer["_id"] if customer else None

    session_id, docs = await channel_chat.converse_on(db, flow, channel_chat.Conversation(
        "sms", number, {"email": None, "phone": number}, customer_id), text, consumers)
    return session_id, render(docs)
