"""The chatbot by SMS: a customer's number is their conversation.

A mobile-originated SMS opens a chat session for its number (linked to the customer
who has that phone) or continues the one it has (`sms_chats`, `_id` the number in
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app.audience import suppressions
from app.chat import sessions as chat
from app.chat import verification
from app.chat.flow_engine import Flow, match_option, normalise
from app.core import rollups
from app.core.config import Settings

log = logging.getLogger("operator_comms.sms")
Consumer = Callable[[dict], Awaitable[Any]]


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


async def session_of(db: AsyncDatabase, number: str) -> str | None:
    link = await db.sms_chats.find_one({"_id": number}, {"session_id": 1})
    return link["session_id"] if link else None


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
    moves = rollups.Increments()
    session_id = await session_of(db, number)
    known = await chat.load_session(db, session_id) if session_id else None
    if known is None:
        # The number an SMS comes from is the proof: the SMSC vouches for it.
        customer = await verification.customer_by_address(db, email=None, phone=number)
        session_id, _token, known, greeting = await chat.create_session(
            db, flow, customer_id=customer["_id"] if customer else None,
            contact={"email": None, "phone": number}, moves=moves, channel="sms")
        try:
            await db.sms_chats.insert_one({"_id": number, "session_id": session_id,
                                           "created_at": chat.now()})
        except DuplicateKeyError:  # a stale link to a session that is gone
            await db.sms_chats.update_one({"_id": number},
                                          {"$set": {"session_id": session_id}})
        if match_option(flow.node(flow.start), text) is None:
            await _written(db, session_id, known, greeting, moves, consumers)
            return session_id, render(greeting)
    assert session_id is not None  # (known, or created above)
    docs = await chat.take_turn(db, flow, session_id, known, text, moves)
    await _written(db, session_id, known, docs, moves, consumers)
    return session_id, render(docs)


async def _written(db: AsyncDatabase, session_id: str, known: chat.Known, docs: list[dict],
                   moves: rollups.Increments, consumers: dict[str, Consumer]) -> None:
    """What a replica does after a turn, at once (an SMS conversation is slow)."""
    await db.chat_sessions.bulk_write([chat.summary_update(session_id, docs, "sms")])
    await rollups.write(db, moves)
    events = chat.events_of(docs, known.customer_id)
    taken = []
    for event in events:
        consumer = consumers.get(event["type"])
        try:
            if consumer is not None:
                await consumer(event)
            taken.append(event)
        except Exception:  # left in the outbox: the chat replicas' sweep hands it on
            log.exception("SMS session %s: event %s not handed on", session_id,
                          event["type"])
    await chat.record_events(db, taken)
