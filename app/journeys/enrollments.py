"""Where each customer is in each journey, and the events that move them, in MongoDB.

An enrollment is one customer's time through one journey version: its `_id` is the
journey and the customer (and, for a journey that may be entered again, the entry
event), so the same entry event twice enrols once. Every move is a compare-and-swap on
its `seq`: of two shards or two rounds walking the same move, one writes it. A move's
sends and attribute changes go into the enrollment's `outbox` in the same write, so a
shard killed after the move and before the send finds them there when it restarts
(the send's key, and so its Message-ID, is the same).

Customers are hashed to 1,024 buckets (`app.audience.customers.bucket_of`); shard i of
N owns the buckets b with b % N == i, so a change of N needs no rewrite.

Events are stored first (`store_events`, keyed by their id), handed to their shard at
once, and marked taken once it has walked them; a shard sweeps its untaken events, so
an event whose hand-off failed is late, never lost.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateMany, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from app.audience.customers import AUDIENCE_BUCKETS, bucket_of
from app.core import bulk
from app.journeys.engine import Move, SendAction, SetAction

ACTIVE, DONE = "active", "done"


def now() -> datetime:
    return datetime.now(UTC)


IDS_PER_READ = 64  # an `$in` of ids per command: the embedded database matches every
# candidate against the whole list again (a round's 500 ids in one `$in` cost 10x more)


SESSION_MEMBER = "session:"  # a chat session nobody proved to be a customer's


def member_of(customer_id: str | None, session_id: str | None) -> str:
    """Who an event is about in journeys: the customer, or else the chat session."""
    if customer_id:
        return customer_id
    if not session_id:
        raise ValueError("an event names a customer or a chat session")
    return f"{SESSION_MEMBER}{session_id}"


def is_session_member(member: str) -> bool:
    return member.startswith(SESSION_MEMBER)


def shard_of(customer_id: str, shards: int) -> int:
    return bucket_of(customer_id) * shards // AUDIENCE_BUCKETS


def buckets_of(shard: int, shards: int) -> dict[str, int]:
    """The shard's buckets, a contiguous range (a query of an index range, not an
    `$in` of hundreds of buckets)."""
    return {"$gte": -(-shard * AUDIENCE_BUCKETS // shards),
            "$lt": -(-(shard + 1) * AUDIENCE_BUCKETS // shards)}


async def by_ids(collection: AsyncCollection, field: str, ids: list[str],
                 projection: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The documents whose `field` is one of `ids`, read IDS_PER_READ at a time (the
    reads at once)."""
    unique = list(dict.fromkeys(ids))
    chunks = [unique[n:n + IDS_PER_READ] for n in range(0, len(unique), IDS_PER_READ)]
    found = await asyncio.gather(*(collection.find({field: {"$in": chunk}}, projection
                                                   ).to_list() for chunk in chunks))
    return [doc for docs in found for doc in docs]


def enrollment_id(version_id: str, customer_id: str, event_id: str, reentry: bool) -> str:
    key = version_id.partition("@")[0]
    return f"{key}|{customer_id}|{event_id}" if reentry else f"{key}|{customer_id}"


def send_key(enrollment: dict[str, Any], step: str, seq: int) -> str:
    """A step's send: the enrollment, its version, the step and the move that sent it
    (a step a customer passes again later is a new send)."""
    return f"j|{enrollment['_id']}|{enrollment['version']}|{step}|{seq}"


def outbox_items(enrollment: dict[str, Any], move: Move, seq: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for action in move.actions:
        if isinstance(action, SendAction):
            items.append({"key": send_key(enrollment, action.step, seq), "kind": "send",
                          "step": action.step, "channel": action.channel})
        elif isinstance(action, SetAction):
            items.append({"key": f"set|{enrollment['_id']}|{action.step}|{seq}",
                          "kind": "set", "attribute": action.attribute,
                          "value": action.value})
    return items


def _state(move: Move, at: datetime) -> dict[str, Any]:
    if move.left is not None:
        return {"status": DONE, "left": move.left, "left_at": at, "step": None}
    return {"status": ACTIVE, "step": move.step, "due_at": move.due_at,
            "waiting_for": move.waiting_for}


def new_enrollment(_id: str, version: dict[str, Any], customer_id: str, event: dict,
                   move: Move, at: datetime) -> dict[str, Any]:
    doc = {"_id": _id, "key": version["key"], "version": version["version"],
           "version_id": version["_id"], "customer_id": customer_id,
           "bucket": bucket_of(customer_id), "entered_at": at, "entry_event": event["_id"],
           "session_id": event.get("session_id"),  # (a chat's refusal: where to offer)
           "seq": 1, "updated_at": at, "arms": dict(move.arms), **_state(move, at)}
    doc["outbox"] = outbox_items(doc, move, 1)
    doc["has_outbox"] = bool(doc["outbox"])
    return {k: v for k, v in doc.items() if v is not None or k == "step"}


async def enrol(db: AsyncDatabase, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert new enrollments; those already there (the same entry again) are left
    out of what is returned."""
    return await insert_new(db, "journey_enrollments", docs)


async def insert_new(db: AsyncDatabase, collection: str, docs: list[dict[str, Any]]
                     ) -> list[dict[str, Any]]:
    """Insert the documents (one command); those whose `_id` was there are left out of
    what is returned."""
    if not docs:
        return []
    writes = bulk.Writes(db, one_command=False)
    for doc in docs:
        writes.insert(collection, doc)
    refused = await writes.apply()
    return [doc for n, doc in enumerate(docs) if n not in refused]


@dataclass
class MoveWrite:
    """A move's compare-and-swap write: on enrollment `id` at `seq` (and active),
    `update`; `after`, the enrollment as it will be."""

    id: str
    seq: int
    update: dict[str, Any]
    after: dict[str, Any]

    def cas(self) -> dict[str, Any]:
        return {"_id": self.id, "seq": self.seq, "status": ACTIVE}

    def shared(self) -> tuple[int, str] | None:
        """What makes this write the same as others' (one `updateMany` for them all),
        or None when it is its own (sends: its outbox items are its own)."""
        return None if "$push" in self.update else (self.seq, repr(self.update))


def move_update(enrollment: dict[str, Any], move: Move, at: datetime,
                mark: str | None = None) -> MoveWrite:
    """The compare-and-swap write of a move. `mark`: the round's token, left on the
    enrollment by the write that wins (a round's moves share it, so the same moves
    of many customers are the same write)."""
    seq = enrollment["seq"] + 1
    state = _state(move, at)
    items = outbox_items(enrollment, move, seq)
    sets = {**{k: v for k, v in state.items() if v is not None}, "seq": seq, "updated_at": at,
            "last_move": mark or uuid.uuid4().hex[:16],
            **{f"arms.{step}": arm for step, arm in move.arms.items()}}
    unset = {k: "" for k in ("due_at", "waiting_for") if state.get(k) is None}
    update: dict[str, Any] = {"$set": sets}
    if unset:
        update["$unset"] = unset
    if items:
        update["$push"] = {"outbox": {"$each": items}}
        sets["has_outbox"] = True
    after = {**enrollment, **sets, "outbox": [*enrollment.get("outbox", []), *items]}
    for key in unset:
        after.pop(key, None)
    return MoveWrite(enrollment["_id"], enrollment["seq"], update, after)


def _commands(writes: list[MoveWrite]) -> list[UpdateOne | UpdateMany]:
    """The writes as few commands as they allow: the same move of many customers (same
    update, same `seq` before) one `updateMany` per IDS_PER_READ of them, each still a
    compare-and-swap per document; a move with sends its own `updateOne`."""
    alike: dict[tuple[int, str], list[MoveWrite]] = {}
    commands: list[UpdateOne | UpdateMany] = []
    for write in writes:
        key = write.shared()
        if key is None:
            commands.append(UpdateOne(write.cas(), write.update))
        else:
            alike.setdefault(key, []).append(write)
    for group in alike.values():
        if len(group) == 1:
            commands.append(UpdateOne(group[0].cas(), group[0].update))
            continue
        for n in range(0, len(group), IDS_PER_READ):
            chunk = group[n:n + IDS_PER_READ]
            commands.append(UpdateMany({"_id": {"$in": [w.id for w in chunk]},
                                        "seq": chunk[0].seq, "status": ACTIVE},
                                       chunk[0].update))
    return commands


async def apply_moves(db: AsyncDatabase, writes: list[MoveWrite]) -> list[dict[str, Any]]:
    """Write the moves (one command, few operations); the enrollments whose move was
    written (a move that lost its compare-and-swap was walked by someone else)."""
    if not writes:
        return []
    result = await db.journey_enrollments.bulk_write(_commands(writes), ordered=False)
    if result.modified_count == len(writes):
        return [w.after for w in writes]
    marks = {doc["_id"]: doc.get("last_move") for doc in await by_ids(
        db.journey_enrollments, "_id", [w.id for w in writes], {"last_move": 1, "seq": 1})}
    # (a compare-and-swap that won left its mark; one that lost found another there)
    return [w.after for w in writes if marks.get(w.id) == w.after["last_move"]]


async def clear_outbox(db: AsyncDatabase, done: dict[str, tuple[int, list[str], bool]]
                       ) -> None:
    """Take the done items out of their enrollments' outboxes (enrollment id -> (its
    seq when they were pushed, the item keys, whether they are all its outbox held
    then)), one command. All of it, and no move since: one write empties it (the
    `$pull` beside it matches only if a move came meanwhile); else the items pulled,
    and the flag cleared if nothing is left."""
    if not done:
        return
    ops: list[Any] = []
    for _id, (seq, keys, complete) in done.items():
        pull = {"$pull": {"outbox": {"key": {"$in": keys}}}}
        if complete:
            ops.append(UpdateOne({"_id": _id, "seq": seq},
                                 {"$set": {"outbox": [], "has_outbox": False}}))
            ops.append(UpdateOne({"_id": _id, "seq": {"$ne": seq}}, pull))
            continue
        ops.append(UpdateOne({"_id": _id}, pull))
        ops.append(UpdateOne({"_id": _id, "seq": seq, "outbox": {"$size": 0}},
                             {"$set": {"has_outbox": False}}))
    await db.journey_enrollments.bulk_write(ops, ordered=True)


async def active_of(db: AsyncDatabase, ids: list[str]) -> list[dict[str, Any]]:
    if not ids:
        return []
    return await by_ids(db.journey_enrollments, "_id", ids)


async def waiting_customers(db: AsyncDatabase, customer_ids: list[str]) -> list[dict[str, Any]]:
    """The active enrollments of these customers (one read)."""
    if not customer_ids:
        return []
    return [doc for doc in await by_ids(db.journey_enrollments, "customer_id", customer_ids)
            if doc["status"] == ACTIVE]


async def load(db: AsyncDatabase, shard: int, buckets: dict[str, int]
               ) -> tuple[list[tuple[float, str, int]], dict[tuple[str, str], int]]:
    """A shard's start, in one read of its enrollments: the timers of those that wait
    ((due, enrollment id, seq)), and its counts of entries, exits and who is at each
    step set from them (a kill between a move and its count heals here; the ways out
    of each step count on as they were). Returns the timers and who is at each
    (version id, step)."""
    timers: list[tuple[float, str, int]] = []
    tallies: defaultdict[str, dict[str, Any]] = defaultdict(
        lambda: {"entered": 0, "at": defaultdict(int), "left": defaultdict(int)})
    async for doc in db.journey_enrollments.find(
            {"bucket": buckets},
            {"version_id": 1, "status": 1, "step": 1, "left": 1, "due_at": 1, "seq": 1}):
        tally = tallies[doc["version_id"]]
        tally["entered"] += 1
        if doc["status"] == ACTIVE:
            tally["at"][doc["step"]] += 1
            if doc.get("due_at") is not None:
                timers.append((doc["due_at"].timestamp(), doc["_id"], doc["seq"]))
        else:
            tally["left"][doc.get("left") or "exit"] += 1
    await db.journey_counts.bulk_write([UpdateMany(
        {"shard": shard}, {"$set": {"entered": 0, "at": {}, "left": {}}})] + [
        UpdateOne({"_id": f"{version_id}#{shard}"}, {"$set": {
            "entered": tally["entered"], "at": dict(tally["at"]), "left": dict(tally["left"]),
            "version_id": version_id, "shard": shard}}, upsert=True)
        for version_id, tally in tallies.items()], ordered=True)
    return timers, {(version_id, step): n for version_id, tally in tallies.items()
                    for step, n in tally["at"].items()}


async def with_outbox(db: AsyncDatabase, buckets: dict[str, int]) -> list[dict[str, Any]]:
    """Enrollments of these buckets with sends or changes not yet made."""
    return await db.journey_enrollments.find(
        {"has_outbox": True, "bucket": buckets}).to_list()


# Events -------------------------------------------------------------------------------

async def store_events(db: AsyncDatabase, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the events (each `{_id, type, customer_id, ...}`); those kept before (the
    same id again) are left out of what is returned."""
    return await insert_new(db, "journey_events", [
        {**event, "bucket": bucket_of(event["customer_id"]), "taken": False,
         "stored_at": now()} for event in events])


async def untaken_events(db: AsyncDatabase, buckets: dict[str, int], before: datetime,
                         limit: int = 5_000) -> list[dict[str, Any]]:
    return await db.journey_events.find(
        {"taken": False, "bucket": buckets, "stored_at": {"$lt": before}}
    ).limit(limit).to_list()


async def mark_taken(db: AsyncDatabase, event_ids: list[str]) -> None:
    at = now()
    await asyncio.gather(*(db.journey_events.update_many(
        {"_id": {"$in": event_ids[n:n + IDS_PER_READ]}}, {"$set": {"taken": True, "taken_at": at}})
        for n in range(0, len(event_ids), IDS_PER_READ)))


# Counts per step ----------------------------------------------------------------------

class Tally:
    """Counts a shard's moves make, written as one bulk of `$inc` per round: per
    journey version, who is at each step, each way out of a step, entries, exits."""

    def __init__(self) -> None:
        self.inc: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int))

    def entered(self, version_id: str, move: Move) -> None:
        self.inc[version_id]["entered"] += 1
        self._went(version_id, None, move)

    def moved(self, version_id: str, before: str | None, move: Move,
              arms: dict[str, str] | None = None) -> None:
        """A move from step `before`; `arms`: the splits' arms the customer was given
        (a conversion counts for each, for the experiments)."""
        self._went(version_id, before, move)
        if move.left == "converted":
            for step, arm in {**(arms or {}), **move.arms}.items():
                self.inc[version_id][f"converted.{step}.{arm}"] += 1

    def _went(self, version_id: str, before: str | None, move: Move) -> None:
        inc = self.inc[version_id]
        if before:
            inc[f"at.{before}"] -= 1
        for step, way in move.passed:
            inc[f"passed.{step}.{way}"] += 1
        if move.left is not None:
            inc[f"left.{move.left}"] += 1
        else:
            inc[f"at.{move.step}"] += 1

    def fold_into(self, at: dict[tuple[str, str], int],
                  ways: dict[tuple[str, str, str], int]) -> None:
        """Add these counts to a shard's own: who is at each (version id, step), and
        each (journey, step, way) out."""
        for version_id, inc in self.inc.items():
            journey = version_id.partition("@")[0]
            for name, n in inc.items():
                kind, _, rest = name.partition(".")
                if kind == "at":
                    at[(version_id, rest)] = at.get((version_id, rest), 0) + n
                elif kind == "passed":
                    step, _, way = rest.partition(".")
                    ways[(journey, step, way)] = ways.get((journey, step, way), 0) + n

    async def write(self, db: AsyncDatabase, shard: int) -> None:
        if not self.inc:
            return
        ops = [UpdateOne({"_id": f"{version_id}#{shard}"},
                         {"$inc": {k: v for k, v in inc.items() if v},
                          "$setOnInsert": {"version_id": version_id, "shard": shard}},
                         upsert=True)
               for version_id, inc in self.inc.items() if any(inc.values())]
        self.inc.clear()
        if ops:
            await db.journey_counts.bulk_write(ops, ordered=False)


async def counts(db: AsyncDatabase, version_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Version id -> its counts summed over shards: `entered`, `at` (step -> customers
    there now), `passed` (step -> way -> customers), `left` (why -> customers),
    `converted` (split step -> arm -> customers who converted after it)."""
    out: dict[str, dict[str, Any]] = {v: {"entered": 0, "at": {}, "passed": {}, "left": {},
                                          "converted": {}} for v in version_ids}
    async for doc in db.journey_counts.find({"version_id": {"$in": version_ids}}):
        total = out[doc["version_id"]]
        total["entered"] += doc.get("entered", 0)
        for step, n in (doc.get("at") or {}).items():
            total["at"][step] = total["at"].get(step, 0) + n
        for why, n in (doc.get("left") or {}).items():
            total["left"][why] = total["left"].get(why, 0) + n
        for field in ("passed", "converted"):
            for step, ways in (doc.get(field) or {}).items():
                mine = total[field].setdefault(step, {})
                for way, n in ways.items():
                    mine[way] = mine.get(way, 0) + n
    for total in out.values():
        total["at"] = {step: n for step, n in total["at"].items() if n > 0}
    return out
