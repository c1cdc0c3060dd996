"""What a messaging channel later says of the messages it accepted (a WhatsApp status:
sent, delivered, read, failed), stored first, then applied to the deliveries in bulk.

A campaign's message names its delivery to the provider (WhatsApp's
`biz_opaque_callback_data`), and each of its statuses names it back, so a status finds
its delivery by `_id`: nothing is written at send time to map them. The webhook stores
a notification's statuses of campaign messages (`store`: one insert, `_id`
`<channel>:<message id>:<status>`, so a redelivered status is known) before it answers
200; rounds (`Applier`, or the campaign runner's sweep) apply every stored status not
applied yet. One whose delivery is not recorded yet (the send's flush has not landed)
waits for a later round, for up to MATCH_FOR_S.

On the delivery: `delivered` sets `receipt: delivered` (once), `read` sets `opened`
(once; a read message was delivered too), `failed` sets `receipt: undeliverable` with
the channel's error; each first one counts in the campaign (`counts.delivered`,
`counts.opened`, `counts.undeliverable`) and in its roll-up and channel funnel, and
settles or triggers the fallback wait of a delivery that has one (`awaits`, set with
its outcome; `app.channels.confirmations`). Conditional writes make a repeated or
reordered status count nothing twice, and each names the channel (a delivery a
fallback moved on to another channel takes nothing more from this one); rounds may
overlap (each replica's, the runner's sweep), so each write marks what its round set
(`receipt_round`, `opened_round`), and a round that changed fewer deliveries than it
asked for counts only those it marked.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from app.channels import confirmations as fallback
from app.core import rollups

log = logging.getLogger("operator_comms.statuses")
MATCH_FOR_S = 600.0
ROUND_S = 1.0  # how long a round waits for more statuses to store before it applies
APPLY_AT_ONCE = 5000
DELIVERED, UNDELIVERABLE, READ, FAILED = "delivered", "undeliverable", "read", "failed"


@dataclass(frozen=True)
class ChannelStatus:
    message_id: str  # the channel's id of our message
    status: str  # sent | delivered | read | failed
    at: datetime
    delivery_id: str  # what the message's callback data named
    error_code: int | None = None
    error: str | None = None


async def store(db: AsyncDatabase, channel: str, statuses: list[ChannelStatus]) -> int:
    """Keep the statuses (before the provider hears we have them); how many were new."""
    if not statuses:
        return 0
    docs = [{"_id": f"{channel}:{s.message_id}:{s.status}", "channel": channel,
             "message_id": s.message_id, "delivery_id": s.delivery_id,
             "status": s.status, "at": s.at,
             "error_code": s.error_code, "error": s.error,
             "received_at": datetime.now(UTC)} for s in statuses]
    try:
        return len((await db.channel_statuses.insert_many(docs, ordered=False)).inserted_ids)
    except BulkWriteError as exc:  # a redelivered notification
        if any(error["code"] != 11000 for error in exc.details["writeErrors"]):
            raise
        return exc.details["nInserted"]


async def apply_waiting(db: AsyncDatabase, channel: str) -> dict[str, int]:
    """Apply the channel's stored statuses; counts of what changed."""
    waiting = [doc async for doc in db.channel_statuses.find(
        {"channel": channel}).sort("received_at", 1).limit(APPLY_AT_ONCE)]
    if not waiting:
        return {}
    deliveries = {doc["_id"]: doc async for doc in db.deliveries.find(
        {"_id": {"$in": sorted({w["delivery_id"] for w in waiting})}},
        {"campaign_id": 1, "created_at": 1, "last_attempt_at": 1, "receipt": 1,
         "opened.first": 1, "awaits": 1, "channel": 1})}
    expired = datetime.now(UTC) - timedelta(seconds=MATCH_FOR_S)
    found = [w for w in waiting if w["delivery_id"] in deliveries]
    # A delivery a fallback moved on to another channel ignores what this one says now.
    matched = [w for w in found if deliveries[w["delivery_id"]].get("channel") == channel]
    done = [w["_id"] for w in found] + [
        w["_id"] for w in waiting if w["delivery_id"] not in deliveries
        and _aware(w["received_at"]) < expired]
    counts: dict[str, int] = {"unmatched": len(waiting) - len(found)}
    if len(found) > len(matched):
        counts["left"] = len(found) - len(matched)
    if matched:
        counts |= await _apply(db, channel, matched, deliveries)
    if done:
        await db.channel_statuses.delete_many({"_id": {"$in": done}})
    return counts


async def _apply(db: AsyncDatabase, channel: str, matched: list[dict],
                 deliveries: dict[str, dict]) -> dict[str, int]:
    by_status: dict[str, dict[str, dict]] = defaultdict(dict)  # status -> delivery -> doc
    for status in matched:
        by_status[status["status"]][status["delivery_id"]] = status
    delivered = {**by_status[DELIVERED], **by_status[READ]}  # a read one was delivered
    counts: dict[str, int] = {}
    increments = rollups.Increments()
    inc: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    round_id = uuid.uuid4().hex  # marks what this round set (rounds may overlap)

    async def settle(field_missing: str, wanted: dict[str, dict], sets: Any,
                     counted: str, note: Any) -> list[str]:
        fresh = [d for d in wanted if d in deliveries
                 and not _has(deliveries[d], field_missing)]
        if not fresh:
            return []
        marker = f"{field_missing.partition('.')[0]}_round"
        update = sets(wanted, fresh)
        update["$set"][marker] = round_id
        result = await db.deliveries.update_many(  # (still on this channel: a round that
            {"_id": {"$in": fresh}, field_missing: {"$exists": False},  # read it before a
             "channel": channel}, update)  # fallback moved it on writes nothing)
        ours = fresh
        if result.modified_count != len(fresh):  # another round set some first: count
            ours = [doc["_id"] async for doc in db.deliveries.find(  # only this one's
                {"_id": {"$in": fresh}, marker: round_id}, {"_id": 1})]
        counts[counted] = counts.get(counted, 0) + len(ours)
        for d in ours:
            doc = deliveries[d]
            inc[doc["campaign_id"]][f"counts.{counted}"] += 1
            note(doc)
        return ours

    def first_at(wanted: dict[str, dict], fresh: list[str]) -> datetime:  # (the round's)
        return min(wanted[d]["at"] for d in fresh)

    created = lambda doc: doc.get("created_at") or doc["last_attempt_at"]  # noqa: E731
    await settle("receipt", delivered, lambda w, f: {"$set": {
        "receipt": DELIVERED, "receipt_at": first_at(w, f)}}, DELIVERED,
        lambda doc: increments.receipted(doc["campaign_id"], created(doc), DELIVERED,
                                         channel))
    by_error: dict[tuple, dict[str, dict]] = defaultdict(dict)  # one write per error
    for d, status in by_status[FAILED].items():
        by_error[(status["error_code"], status["error"])][d] = status
    for (code, error), failures in by_error.items():
        await settle("receipt", failures, lambda w, f, code=code, error=error: {"$set": {
            "receipt": UNDELIVERABLE, "receipt_at": first_at(w, f), "last_code": code,
            "last_error": error}}, UNDELIVERABLE,
            lambda doc: increments.receipted(doc["campaign_id"], created(doc),
                                             UNDELIVERABLE, channel))
    await settle("opened.first", by_status[READ], lambda w, f: {"$set": {
        "opened": {"first": first_at(w, f), "last": first_at(w, f), "count": 1}}},
        "opened", lambda doc: increments.engaged(doc["campaign_id"], created(doc),
                                                 "opened", channel))
    def waiting_for(found: dict[str, dict]) -> list[str]:  # (only these have a wait)
        return [d for d in found if deliveries.get(d, {}).get("awaits")]

    await fallback.confirmed(db, channel, waiting_for(by_status[DELIVERED]), DELIVERED)
    await fallback.confirmed(db, channel, waiting_for(by_status[READ]), READ)
    await fallback.failed(db, channel, waiting_for(by_status[FAILED]))
    for campaign_id, changes in inc.items():
        await db.campaigns.update_one({"_id": campaign_id}, {"$inc": dict(changes)})
    if increments:
        await rollups.write(db, increments)
    return counts


def _has(doc: dict, dotted: str) -> bool:
    value: Any = doc
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return False
        value = value[part]
    return True


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


class Applier:
    """Applies a channel's stored statuses in rounds, not per notification: a webhook
    that stored some asks for a round (`soon`); the round starts ROUND_S later and takes
    every status stored by then, and one more follows if more were asked for meanwhile.
    A provider that posts each status alone (the Cloud API mostly does) costs one insert
    per notification, and a handful of commands per round."""

    def __init__(self, db: AsyncDatabase, channel: str, round_s: float = ROUND_S,
                 on_applied: Callable[[dict[str, int]], None] | None = None):
        self.db, self.channel, self.round_s = db, channel, round_s
        self.on_applied = on_applied  # what a round changed (metrics)
        self.task: asyncio.Task | None = None
        self.again = False

    def soon(self) -> None:
        if self.task is not None and not self.task.done():
            self.again = True
            return
        self.task = asyncio.get_running_loop().create_task(self._rounds())

    async def _rounds(self) -> None:
        self.again = True
        while self.again:
            self.again = False
            await asyncio.sleep(self.round_s)
            try:
                counts = await apply_waiting(self.db, self.channel)
                if self.on_applied is not None:
                    self.on_applied(counts)
            except Exception:  # stored: the next round (or the runner's sweep) applies them
                log.exception("%s statuses: a round failed", self.channel)
