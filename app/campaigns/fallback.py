"""Fallback after the send: a message its channel does not confirm in time, or that
fails after it was accepted, goes by the next channel of its campaign's rule.

A campaign's rule names its channels in order (`fallback`); who a channel cannot reach,
or who it refuses at once, a send task hands to the next one itself
(`app.campaigns.sending`). What a channel says later (a WhatsApp `failed` status, an
SMS receipt `undeliverable`, no `delivered`/`read` within `fallback_after_s`) is
handled here, through `fallback_waits`: one per sent message that has a channel after
it in the rule, `_id` its delivery, due `fallback_after_s` after the send, written with
the outcomes' flush.

- A status that confirms it (`delivered`, or `read` when the campaign asks for reads)
  deletes the wait (`confirmed`); a failure makes it due now (`failed`).
- The campaign's runner moves due waits on (`move_due`), a batch at a time: the
  deliveries go back to pending with what their channel came to kept in `tried` (its
  send stays billed and in its channel's funnel), a pending batch of their customers
  is stored first, and the next send picks the first channel of the rule not tried.
  A crash between the two leaves a batch whose deliveries are not pending (it sends
  nothing) and waits still due (the next sweep moves them).
- A campaign completes once no wait is left (`awaiting`).

One message per channel per customer: a delivery moves on once per channel, and each
channel's send is the ledger's usual exactly-once send.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.campaigns.batches import insert_pending_batch
from app.channels.confirmations import DELIVERED, READ, confirmed, failed  # noqa: F401
from app.core import bulk, rollups
from app.core.statuses import DeliveryStatus

MOVE_AT_ONCE = 1000  # waits moved on per sweep (the rest at the next one)
# What a delivery keeps of a channel it leaves (its funnel, its bill), and unsets.
UNSET = ("latency_ms", "smsc_ids", "awaits", "receipt_round", "opened_round",
         "wa_message_id", "telegram_message_id")  # (the channel's own, not kept)
KEPT = ("channel", "sent_at", "receipt", "receipt_at", "opened", "clicked", "segments",
        "last_code", "last_error", "message_id")


@dataclass(frozen=True)
class Confirm:
    """How long a campaign's channel has to confirm a message, and what confirms it."""

    within_s: float
    level: str = DELIVERED  # delivered | read


def wait_level(confirm: Confirm, confirms: tuple[str, ...], opens_tracked: bool
               ) -> str | None:
    """What confirms a message of a channel that reports `confirms`: the campaign's
    level, or delivery where the channel reports no reads; None: the channel cannot
    confirm it (its acceptance is all there is: nothing waits)."""
    if not opens_tracked and confirms == ("read",):
        return None  # an email without an open pixel
    if confirm.level in confirms:
        return confirm.level
    return DELIVERED if DELIVERED in confirms else None


def stage_waits(writes: bulk.Writes, waits: list[dict]) -> None:
    for wait in waits:
        writes.insert("fallback_waits", wait)


def wait_doc(delivery_id: str, campaign_id: str, customer_id: str, channel: str,
             confirm: Confirm, level: str, sent_at: datetime) -> dict[str, Any]:
    return {"_id": delivery_id, "campaign_id": campaign_id, "customer_id": customer_id,
            "channel": channel, "level": level,
            "due_at": sent_at + timedelta(seconds=confirm.within_s)}


async def awaiting(db: AsyncDatabase, campaign_id: str) -> int:
    return await db.fallback_waits.count_documents({"campaign_id": campaign_id})


async def move_due(db: AsyncDatabase, campaign_id: str, now: datetime) -> str | None:
    """Move the campaign's due waits on (up to MOVE_AT_ONCE): the id of the pending
    batch that sends them by their next channel (None: nothing was due)."""
    due = [doc async for doc in db.fallback_waits.find(
        {"campaign_id": campaign_id, "due_at": {"$lte": now}}).limit(MOVE_AT_ONCE)]
    if not due:
        return None
    waits = {doc["_id"]: doc for doc in due}
    deliveries = [doc async for doc in db.deliveries.find(
        {"_id": {"$in": list(waits)}, "status": DeliveryStatus.SENT},
        {**{k: 1 for k in rollups.DELIVERY_FIELDS if "." not in k}, "customer_id": 1,
         "last_attempt_at": 1, "last_error": 1, "message_id": 1, "clicked": 1, "opened": 1,
         "receipt_at": 1})]
    key = f"fallback:{uuid.uuid4().hex[:12]}"
    batch = None
    if deliveries:
        if await insert_pending_batch(db, campaign_id, key,
                                      [doc["customer_id"] for doc in deliveries],
                                      new_recipients=False):
            batch = f"{campaign_id}:{key}"
        writes = bulk.Writes(db, one_command=False)
        increments = rollups.Increments()
        for doc in deliveries:
            wait = waits[doc["_id"]]
            why = "failed" if wait.get("failed") else f"not {wait['level']} in time"
            leaving = {k: doc[k] for k in KEPT if doc.get(k) is not None}
            leaving["channel"] = wait["channel"]
            writes.update("deliveries", {"_id": doc["_id"], "status": DeliveryStatus.SENT}, {
                "$set": {"status": DeliveryStatus.PENDING, "attempts": 0},
                "$push": {"tried": {**leaving, "why": why, "left_at": now}},
                "$unset": {k: "" for k in (*KEPT, *UNSET)}})
            increments.moved_on(campaign_id, doc)
        await writes.apply()
        await rollups.write(db, increments)
        await db.campaigns.update_one({"_id": campaign_id}, {"$inc": {
            f"counts.{DeliveryStatus.SENT}": -len(deliveries)}})
    await db.fallback_waits.delete_many({"_id": {"$in": list(waits)}})
    return batch
