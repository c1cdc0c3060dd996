"""Chat sessions, their inbox and their events, in MongoDB.

Every message of a session has a sequence number, unique per session; the last one
carries the conversation's state after it (`state_after`). A turn reads the last
message, computes the bot's answer, and inserts the customer's message and the
replies at the next numbers in one ordered insert. That insert is the
compare-and-swap: a concurrent turn on another replica collides on the first number
and starts over from the new state, so turns of one session are applied one at a
time, in order, with no lock and nothing half-written. Events ride in the same
document (a transactional outbox) and are copied to `events` and handed to their
consumer afterwards, so a crash between the two never loses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from app.flow_engine import Flow, Turn, start, step

MAX_TURN_TRIES = 50


class SessionNotFound(LookupError):
    """No such session, or not this token: the two look the same from outside."""


def now() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def public_message(doc: dict) -> dict[str, Any]:
    return {"seq": doc["seq"], "role": doc["role"], "text": doc["text"],
            "options": doc.get("options", []), "node": doc.get("node"),
            "kind": doc.get("kind", "text"), "offer": doc.get("offer"),
            "created_at": doc["created_at"].isoformat()}


async def find_customer(db: AsyncDatabase, email: str | None, phone: str | None) -> dict | None:
    if email:
        found = await db.customers.find_one({"email": email.strip().lower()})
        if found:
            return found
    if phone:
        return await db.customers.find_one({"phone": phone.strip()})
    return None


async def create_session(db: AsyncDatabase, flow: Flow, *, email: str | None = None,
                         phone: str | None = None, where: str = "") -> tuple[dict, str, list]:
    """A new session and its greeting; returns (session, token, messages)."""
    customer = await find_customer(db, email, phone)
    token = secrets.token_urlsafe(24)
    session = {
        "_id": uuid.uuid4().hex,
        "token_hash": token_hash(token),
        "customer_id": customer["_id"] if customer else None,
        "contact": {"email": email, "phone": phone},
        "created_at": now(), "updated_at": now(),
        "node": flow.start, "ended": False, "replica": where,
    }
    await db.chat_sessions.insert_one(session)
    messages = await _append(db, session, start(flow), customer_text=None, based_on=0)
    return session, token, messages


async def get_session(db: AsyncDatabase, session_id: str, token: str) -> dict:
    session = await db.chat_sessions.find_one({"_id": session_id})
    if session is None or not secrets.compare_digest(session["token_hash"], token_hash(token)):
        raise SessionNotFound(session_id)
    return session


async def last_message(db: AsyncDatabase, session_id: str) -> dict | None:
    return await db.messages.find_one({"session_id": session_id}, sort=[("seq", DESCENDING)])


async def take_turn(db: AsyncDatabase, flow: Flow, session: dict, text: str,
                    where: str = "") -> list[dict]:
    """Apply the customer's text; return the stored messages of this turn, in order."""
    for attempt in range(MAX_TURN_TRIES):
        last = await last_message(db, session["_id"])
        seq = last["seq"] if last else 0
        turn = step(flow, last.get("state_after") if last else None, text)
        try:
            return await _append(db, session, turn, customer_text=text, based_on=seq,
                                 where=where)
        except (DuplicateKeyError, BulkWriteError) as exc:
            if isinstance(exc, BulkWriteError) and any(
                    e["code"] != 11000 for e in exc.details["writeErrors"]):
                raise
            await asyncio.sleep(random.uniform(0.002, 0.02) * (attempt + 1))
    raise RuntimeError(f"session {session['_id']}: too much contention")


async def append_system_turn(db: AsyncDatabase, session_id: str, turn: Turn, *, role: str,
                             kind: str = "text", offer: dict | None = None) -> list[dict]:
    """Put messages into a session's inbox from outside the chat (marketing, agents)."""
    session = await db.chat_sessions.find_one({"_id": session_id})
    if session is None:
        raise SessionNotFound(session_id)
    for attempt in range(MAX_TURN_TRIES):
        last = await last_message(db, session_id)
        try:
            return await _append(db, session, turn, customer_text=None,
                                 based_on=last["seq"] if last else 0, role=role, kind=kind,
                                 offer=offer)
        except (DuplicateKeyError, BulkWriteError):
            await asyncio.sleep(random.uniform(0.002, 0.02) * (attempt + 1))
    raise RuntimeError(f"session {session_id}: too much contention")


async def _append(db: AsyncDatabase, session: dict, turn: Turn, *, customer_text: str | None,
                  based_on: int, where: str = "", role: str = "bot", kind: str = "text",
                  offer: dict | None = None) -> list[dict]:
    at = now()
    docs: list[dict] = []
    if customer_text is not None:
        docs.append({"role": "customer", "text": customer_text})
    for message in turn.messages:
        docs.append({"role": role, "text": message.text, "options": message.options,
                     "node": message.node, "kind": kind, **({"offer": offer} if offer else {})})
    for n, doc in enumerate(docs, start=1):
        doc.update(_id=f"{session['_id']}:{based_on + n}", session_id=session["_id"],
                   seq=based_on + n, created_at=at)
    docs[-1]["state_after"] = turn.state
    if turn.events:
        docs[-1]["events"] = turn.events
        docs[-1]["outbox"] = "pending"
    await db.messages.insert_many(docs, ordered=True)
    await db.chat_sessions.update_one(
        {"_id": session["_id"]},
        {"$set": {"node": turn.state.get("node"), "ended": turn.state.get("ended", False),
                  "updated_at": at, "last_seq": docs[-1]["seq"],
                  **({"replica": where} if where else {})}})
    return docs


async def messages_after(db: AsyncDatabase, session_id: str, after: int = 0,
                         limit: int = 200) -> list[dict]:
    cursor = db.messages.find({"session_id": session_id, "seq": {"$gt": after},
                               "cleared": {"$ne": True}}).sort(
        "seq", ASCENDING).limit(limit)
    return await cursor.to_list()


async def clear_conversation(db: AsyncDatabase, flow: Flow, session: dict) -> list[dict]:
    """Forget the conversation and greet again (sequence numbers keep counting)."""
    last = await last_message(db, session["_id"])
    seq = last["seq"] if last else 0
    await db.messages.update_many({"session_id": session["_id"], "seq": {"$lte": seq}},
                                  {"$set": {"cleared": True}})
    return await _append(db, session, start(flow), customer_text=None, based_on=seq)


# The event outbox ---------------------------------------------------------------------


async def collect_events(db: AsyncDatabase, limit: int = 100) -> list[dict]:
    """Copy events from turns into `events` (idempotent); return those not yet handed on."""
    async for message in db.messages.find({"outbox": "pending"}).limit(limit):
        session = await db.chat_sessions.find_one({"_id": message["session_id"]}) or {}
        for n, event_type in enumerate(message["events"]):
            event = {"_id": f"{message['_id']}:{n}", "type": event_type,
                     "session_id": message["session_id"],
                     "customer_id": session.get("customer_id"),
                     "state": message.get("state_after", {}),
                     "created_at": message["created_at"], "delivered": False}
            with contextlib.suppress(DuplicateKeyError):
                await db.events.insert_one(event)
        await db.messages.update_one({"_id": message["_id"]}, {"$set": {"outbox": "copied"}})
    cursor = db.events.find({"delivered": False}).sort("created_at", ASCENDING).limit(limit)
    return await cursor.to_list()


async def mark_delivered(db: AsyncDatabase, event_id: str) -> None:
    await db.events.update_one({"_id": event_id},
                               {"$set": {"delivered": True, "delivered_at": now()}})


async def session_overview(db: AsyncDatabase, limit: int = 100) -> dict[str, Any]:
    sessions = await db.chat_sessions.find({}, {"token_hash": 0}).sort(
        "updated_at", DESCENDING).limit(limit).to_list()
    handoffs = await db.events.find({"type": "handoff_requested", "resolved": {"$ne": True}}
                                    ).sort("created_at", DESCENDING).limit(limit).to_list()
    return {
        "sessions": [{"id": s["_id"], "node": s.get("node"), "ended": s.get("ended"),
                      "customer_id": s.get("customer_id"), "contact": s.get("contact"),
                      "replica": s.get("replica"), "messages": s.get("last_seq", 0),
                      "updated_at": s["updated_at"].isoformat()} for s in sessions],
        "open_handoffs": [{"id": e["_id"], "session_id": e["session_id"],
                           "customer_id": e.get("customer_id"),
                           "created_at": e["created_at"].isoformat()} for e in handoffs],
        "total_sessions": await db.chat_sessions.count_documents({}),
    }
