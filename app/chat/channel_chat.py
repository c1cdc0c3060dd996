"""The chatbot on a messaging channel (SMS, Telegram): the customer's address there is
their conversation, kept in `<channel>_chats` (`_id` the address) and pointing at a chat
session like any other (its `channel` says which), so the dashboard's chat panel shows
it and the marketing actor's counter-offers reach it.

The text goes through the same flow engine as the web chat. The first message of a new
conversation answers the greeting when it is one of its options (a customer replying
"1" to a message that asked), else the greeting is the answer. Events (a refusal, an
acceptance) go to the same consumers as the web chat's, then are stored. Who the
customer is comes from what the channel vouches for (the SMSC's number; a Telegram
chat tied by a signed link), asked only when a session is made.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app.chat import sessions as chat
from app.chat.flow_engine import Flow, match_option
from app.core import rollups

log = logging.getLogger("operator_comms.chat")
Consumer = Callable[[dict], Awaitable[Any]]


@dataclass(frozen=True)
class Conversation:
    """A conversation held on a channel: the channel, the customer's address there (the
    conversation's key), the contact its session keeps, and who the customer is when
    the channel vouches for it (called when a session is made)."""

    channel: str
    address: str
    contact: dict[str, Any]
    customer_id: Callable[[], Awaitable[str | None]]


def said(docs: list[dict]) -> tuple[str, tuple[str, ...]] | None:
    """The bot's messages of a turn as one message: its text, and the last question's
    options (buttons, where the channel has them); None: nothing to say."""
    bot = [doc for doc in docs if doc["role"] != "customer"]
    if not bot:
        return None
    options = next((tuple(doc["options"]) for doc in reversed(bot) if doc.get("options")),
                   ())
    return "\n\n".join(doc["text"] for doc in bot), options


async def forget(db: AsyncDatabase, channel: str, address: str) -> None:
    """The next message on this address starts a new conversation (a new session)."""
    await db[f"{channel}_chats"].delete_one({"_id": address})


async def converse_on(db: AsyncDatabase, flow: Flow, conversation: Conversation, text: str,
                      consumers: dict[str, Consumer]) -> tuple[str, list[dict]]:
    """A chat turn on a messaging channel (SMS, Telegram): (its session, the turn's
    messages). The address's session is kept in `<channel>_chats`."""
    moves = rollups.Increments()
    links = db[f"{conversation.channel}_chats"]
    link = await links.find_one({"_id": conversation.address}, {"session_id": 1})
    session_id = link["session_id"] if link else None
    known = await chat.load_session(db, session_id) if session_id else None
    if known is None:
        session_id, _token, known, greeting = await chat.create_session(
            db, flow, customer_id=await conversation.customer_id(),
            contact=conversation.contact, moves=moves, channel=conversation.channel)
        try:
            await links.insert_one({"_id": conversation.address, "session_id": session_id,
                                    "created_at": chat.now()})
        except DuplicateKeyError:  # a stale link to a session that is gone
            await links.update_one({"_id": conversation.address},
                                   {"$set": {"session_id": session_id}})
        if match_option(flow.node(flow.start), text) is None:
            await _written(db, conversation.channel, session_id, known, greeting, moves,
                           consumers)
            return session_id, greeting
    assert session_id is not None  # (known, or created above)
    docs = await chat.take_turn(db, flow, session_id, known, text, moves)
    await _written(db, conversation.channel, session_id, known, docs, moves, consumers)
    return session_id, docs


async def _written(db: AsyncDatabase, channel: str, session_id: str, known: chat.Known,
                   docs: list[dict], moves: rollups.Increments,
                   consumers: dict[str, Consumer]) -> None:
    """What a replica does after a turn, at once (a messaging conversation is slow)."""
    await db.chat_sessions.bulk_write([chat.summary_update(session_id, docs, channel)])
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
            log.exception("%s session %s: event %s not handed on", channel, session_id,
                          event["type"])
    await chat.record_events(db, taken)
