"""Chat sessions, their inbox and their events, in MongoDB.

Every message of a session has a sequence number, unique per session; the last one
carries the conversation's state after it (`state_after`). A turn computes the bot's
answer from the state after the last message and inserts the customer's message and
the replies at the next numbers in one ordered insert. That insert is the
compare-and-swap: a turn computed from an older state (another replica, the marketing
actor, a stale cache) collides on the first number, re-reads the last message and
starts over, so turns of one session are applied one at a time, in order, with no
lock and nothing half-written. Events ride in the same document (a transactional
outbox) and are copied to `events` and handed to their consumer afterwards, so a
crash between the two never loses one.

A replica remembers what it last saw of a session (`Known`: token hash, customer,
last number and state), so a turn on a warm session is one insert and a cold one a
read more. The session document's summary (node, ended, state, last number) is
derived from the messages and written in bulk (`summary_update`), never on the
turn's path.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from app.chat.flow_engine import Flow, Turn, start, step
from app.core import rollups
from app.core.paging import newest_first
from app.core.statuses import OutboxStatus

MAX_TURN_TRIES = 50
REMEMBERED_SESSIONS = 100_000


class SessionNotFound(LookupError):
    """No such session, or not this token: the two look the same from outside."""


def now() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Known:
    """What a replica last saw of a session; the messages stay the record."""

    token_hash: str
    customer_id: str | None
    seq: int
    state: dict[str, Any] | None
    created_day: str | None = None  # the day its chat roll-up counts it on

    def check(self, token: str, session_id: str) -> None:
        if not secrets.compare_digest(self.token_hash, token_hash(token)):
            raise SessionNotFound(session_id)

    def saw(self, docs: list[dict]) -> None:
        if docs and docs[-1]["seq"] > self.seq:
            self.seq = docs[-1]["seq"]
            self.state = docs[-1].get("state_after")


class SessionMemory:
    """A bounded LRU of `Known` sessions for one replica."""

    def __init__(self, size: int = REMEMBERED_SESSIONS) -> None:
        self.size = size
        self.entries: OrderedDict[str, Known] = OrderedDict()

    def get(self, session_id: str) -> Known | None:
        known = self.entries.get(session_id)
        if known is not None:
            self.entries.move_to_end(session_id)
        return known

    def put(self, session_id: str, known: Known) -> Known:
        self.entries[session_id] = known
        self.entries.move_to_end(session_id)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return known

    def __len__(self) -> int:
        return len(self.entries)


def public_message(doc: dict) -> dict[str, Any]:
    return {"seq": doc["seq"], "role": doc["role"], "text": doc["text"],
            "options": doc.get("options", []), "node": doc.get("node"),
            "kind": doc.get("kind", "text"), "offer": doc.get("offer"),
            "created_at": doc["created_at"].isoformat()}


async def create_session(db: AsyncDatabase, flow: Flow, *, customer_id: str | None = None,
                         contact: dict[str, str | None] | None = None,
                         verification: dict[str, Any] | None = None,
                         session_id: str | None = None, where: str = "",
                         moves: rollups.Increments | None = None, channel: str = "web"
                         ) -> tuple[str, str, Known, list[dict]]:
    """A new session and its greeting: (session id, token, what we know, messages).

    `customer_id` only for an identity already proven (an SMS's own number); an address
    typed into the web chat is a `contact` with a pending `verification`
    (`app.chat.verification`), linked when its code comes back. Two writes: the session
    (already summarised as after its greeting), the greeting. Its count in the chat
    roll-up goes into `moves`, for the caller to write."""
    token = secrets.token_urlsafe(24)
    session_id = session_id or new_session_id()
    turn = start(flow)
    docs = turn_docs(session_id, turn, customer_text=None, based_on=0)
    session = {
        "_id": session_id, "token_hash": token_hash(token), "customer_id": customer_id,
        "contact": contact or {"email": None, "phone": None},
        **({"verification": verification} if verification else {}),
        **({"channel": channel} if channel != "web" else {}),
        "created_at": docs[0]["created_at"], **_summary(docs, where),
    }
    await db.chat_sessions.insert_one(session)
    await db.messages.insert_many(docs, ordered=True)
    known = Known(session["token_hash"], customer_id, 0, None,
                  rollups.day_of(session["created_at"]))
    known.saw(docs)
    if moves is not None:
        moves.session_created(session["created_at"], known.state)
    return session_id, token, known, docs


def new_session_id() -> str:
    return uuid.uuid4().hex


async def load_session(db: AsyncDatabase, session_id: str) -> Known | None:
    """What the database knows of a session (one read: the session's summary), or None.

    The summary may lag the messages by a flush; a turn computed from it then collides
    on its first number and re-reads the last message."""
    session = await db.chat_sessions.find_one(
        {"_id": session_id},
        {"token_hash": 1, "customer_id": 1, "last_seq": 1, "state": 1, "created_at": 1})
    if session is None:
        return None
    created = session.get("created_at")
    known = Known(session["token_hash"], session.get("customer_id"),
                  session.get("last_seq", 0), session.get("state"),
                  rollups.day_of(created) if created else None)
    if "state" not in session:  # a session from before summaries carried the state
        await refresh(db, session_id, known)
    return known


async def refresh(db: AsyncDatabase, session_id: str, known: Known) -> None:
    """Catch up with the record after a collision: the last message, and the customer
    (a session proven on another replica wrote a message, so this one collides)."""
    last = await last_message(db, session_id)
    known.seq, known.state = (last["seq"], last.get("state_after")) if last else (0, None)
    session = await db.chat_sessions.find_one({"_id": session_id}, {"customer_id": 1})
    if session is not None:
        known.customer_id = session.get("customer_id")


async def last_message(db: AsyncDatabase, session_id: str) -> dict | None:
    return await db.messages.find_one({"session_id": session_id}, sort=[("seq", DESCENDING)])


async def take_turn(db: AsyncDatabase, flow: Flow, session_id: str, known: Known,
                    text: str, moves: rollups.Increments | None = None) -> list[dict]:
    """Apply the customer's text; return the stored messages of this turn, in order.

    One insert when `known` is current; a collision re-reads the last message. The
    session's move in the chat roll-up goes into `moves`, for the caller to write."""
    return await _append_turn(db, session_id, known, lambda state: step(flow, state, text),
                              moves, customer_text=text)


async def append_system_turn(db: AsyncDatabase, session_id: str, turn: Turn, *, role: str,
                             kind: str = "text", offer: dict | None = None,
                             known: Known | None = None) -> list[dict]:
    """Put messages into a session's inbox from outside the chat (marketing, agents).

    Writes the session's summary itself: such writers have no replica to batch it."""
    if known is None:
        known = await load_session(db, session_id)
        if known is None:
            raise SessionNotFound(session_id)
    moves = rollups.Increments()
    docs = await _append_turn(db, session_id, known, lambda _state: turn, moves,
                              customer_text=None, role=role, kind=kind, offer=offer)
    await db.chat_sessions.bulk_write([summary_update(session_id, docs)])
    await rollups.write(db, moves)
    return docs


async def _append_turn(db: AsyncDatabase, session_id: str, known: Known, compute,
                       moves: rollups.Increments | None, **message: Any) -> list[dict]:
    for attempt in range(MAX_TURN_TRIES):
        before = known.state  # the state this turn is computed from, and replaces
        docs = turn_docs(session_id, compute(before), based_on=known.seq, **message)
        try:
            await db.messages.insert_many(docs, ordered=True)
        except (DuplicateKeyError, BulkWriteError) as exc:
            if isinstance(exc, BulkWriteError) and any(
                    e["code"] != 11000 for e in exc.details["writeErrors"]):
                raise
            if attempt:
                await asyncio.sleep(random.uniform(0.002, 0.02) * attempt)
            await refresh(db, session_id, known)
            continue
        known.saw(docs)
        if moves is not None:
            moves.session_moved(known.created_day, before, docs[-1].get("state_after"))
        return docs
    raise RuntimeError(f"session {session_id}: too much contention")


def turn_docs(session_id: str, turn: Turn, *, customer_text: str | None, based_on: int,
               role: str = "bot", kind: str = "text",
               offer: dict | None = None) -> list[dict]:
    at = now()
    docs: list[dict] = []
    if customer_text is not None:
        docs.append({"role": "customer", "text": customer_text})
    for message in turn.messages:
        docs.append({"role": role, "text": message.text, "options": message.options,
                     "node": message.node, "kind": kind, **({"offer": offer} if offer else {})})
    for n, doc in enumerate(docs, start=1):
        doc.update(_id=f"{session_id}:{based_on + n}", session_id=session_id,
                   seq=based_on + n, created_at=at)
    docs[-1]["state_after"] = turn.state
    if turn.events:
        docs[-1]["events"] = turn.events
        docs[-1]["outbox"] = OutboxStatus.PENDING
    return docs


def _summary(docs: list[dict], where: str = "") -> dict[str, Any]:
    state = docs[-1].get("state_after") or {}
    return {"node": state.get("node"), "ended": state.get("ended", False), "state": state,
            "updated_at": docs[-1]["created_at"], "last_seq": docs[-1]["seq"],
            **({"replica": where} if where else {})}


def summary_update(session_id: str, docs: list[dict], where: str = "") -> UpdateOne:
    """The session document's summary after these messages, for a bulk write. Only
    moves forward: an older summary landing late (another replica) changes nothing."""
    return UpdateOne({"_id": session_id, "last_seq": {"$lt": docs[-1]["seq"]}},
                     {"$set": _summary(docs, where)})


async def messages_after(db: AsyncDatabase, session_id: str, after: int = 0,
                         limit: int = 200) -> list[dict]:
    # {session_id, seq} is the unique index; `cleared` is filtered here so the query
    # stays on it (the embedded database scans when an index lacks a filter field).
    cursor = db.messages.find({"session_id": session_id, "seq": {"$gt": after}}).sort(
        "seq", ASCENDING).limit(limit)
    return [doc for doc in await cursor.to_list() if not doc.get("cleared")]


async def clear_conversation(db: AsyncDatabase, flow: Flow, session_id: str,
                             known: Known, moves: rollups.Increments | None = None
                             ) -> list[dict]:
    """Forget the conversation and greet again (sequence numbers keep counting)."""
    await refresh(db, session_id, known)
    await db.messages.update_many({"session_id": session_id, "seq": {"$lte": known.seq}},
                                  {"$set": {"cleared": True}})
    return await _append_turn(db, session_id, known, lambda _state: start(flow), moves,
                              customer_text=None)


# The event outbox ---------------------------------------------------------------------


def events_of(docs: list[dict], customer_id: str | None) -> list[dict]:
    """The events these messages carry, as `events` documents whose ids come from the
    message (so handing one on twice stores it once)."""
    return [{"_id": f"{doc['_id']}:{n}", "type": event_type, "session_id": doc["session_id"],
             "customer_id": customer_id, "state": doc.get("state_after", {}),
             "created_at": doc["created_at"], "message_id": doc["_id"]}
            for doc in docs for n, event_type in enumerate(doc.get("events", []))]


async def record_events(db: AsyncDatabase, events: list[dict]) -> None:
    """Store events their consumers have taken and close their messages' outbox: two
    writes for any number of events (three when one of them is reported)."""
    if not events:
        return
    at = now()
    stored_before: set[int] = set()
    try:
        await db.events.insert_many([{**e, "delivered": True, "delivered_at": at}
                                     for e in events], ordered=False)
    except BulkWriteError as exc:
        if any(e["code"] != 11000 for e in exc.details["writeErrors"]):
            raise
        # Stored before (a retry after a crash, or an event of the older outbox).
        stored_before = {e["index"] for e in exc.details["writeErrors"]}
        await db.events.update_many({"_id": {"$in": [e["_id"] for e in events]}},
                                    {"$set": {"delivered": True, "delivered_at": at}})
    counted = rollups.Increments()  # the chat roll-up counts each event once, when stored
    for n, event in enumerate(events):
        if n not in stored_before:
            counted.event(event)
    await rollups.write(db, counted)
    message_ids = sorted({e["message_id"] for e in events if e.get("message_id")})
    if message_ids:
        await db.messages.update_many({"_id": {"$in": message_ids}},
                                      {"$set": {"outbox": OutboxStatus.COPIED}})


async def stranded_events(db: AsyncDatabase, older_than_s: float,
                          limit: int = 100) -> list[dict]:
    """Events still waiting in an outbox `older_than_s` after their turn: their replica
    stopped before handing them on. Read by a slow sweep, never per turn."""
    cutoff = now().timestamp() - older_than_s
    stranded: list[dict] = []
    async for message in db.messages.find({"outbox": OutboxStatus.PENDING}).limit(limit):
        if message["created_at"].replace(tzinfo=UTC).timestamp() > cutoff:
            continue
        session = await db.chat_sessions.find_one({"_id": message["session_id"]},
                                                  {"customer_id": 1}) or {}
        stranded += events_of([message], session.get("customer_id"))
    # Stored but never handed on by the outbox of earlier versions.
    stranded += await db.events.find({"delivered": False}).sort(
        "created_at", ASCENDING).limit(limit).to_list()
    return stranded


async def session_overview(db: AsyncDatabase, limit: int = 100, cursor: str | None = None
                           ) -> dict[str, Any]:
    """Sessions, most recently active first, a page at a time (a session active while
    an operator pages moves to the top: it can show twice or not at all), and the open
    handoffs."""
    sessions, next_cursor = await newest_first(db.chat_sessions, {}, "updated_at", limit,
                                               cursor, {"token_hash": 0})
    # Every handoff stays open (nothing resolves one yet): the newest, over an index,
    # without reading every event (the live dashboard asks for these each second).
    handoffs, _ = await newest_first(db.events, {"type": "handoff_requested"}, "created_at",
                                     limit)
    return {
        "sessions": [{"id": s["_id"], "node": s.get("node"), "ended": s.get("ended"),
                      "customer_id": s.get("customer_id"), "contact": s.get("contact"),
                      "channel": s.get("channel", "web"),
                      "replica": s.get("replica"), "messages": s.get("last_seq", 0),
                      "updated_at": s["updated_at"].isoformat()} for s in sessions],
        "next_cursor": next_cursor,
        "open_handoffs": [{"id": e["_id"], "session_id": e["session_id"],
                           "customer_id": e.get("customer_id"),
                           "created_at": e["created_at"].isoformat()} for e in handoffs],
        # From the chat roll-ups: the dashboard polls this, and counting the sessions
        # collection would read every session each time.
        "total_sessions": await rollups.sessions_ever(db),
    }
