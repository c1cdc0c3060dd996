"""Retry failed: a finished campaign sends again exactly the deliveries whose last
outcome was a failure, `dead` (every attempt failed for a transient reason) or `failed`
(refused), and nobody who was sent or skipped (unsubscribed, suppressed, unreachable).

One retry round at a time, won by moving the campaign from completed to running (a
second request finds it running: 409). Its failed deliveries are found through the
campaign's batches (as the recount finds them), put in new pending batches of the
campaign's batch size, then set pending again with their attempts from zero; the
campaign's runner sends them as it sends any pending batch, under the same ledger, so
each is sent at most once more. A batch is stored before its deliveries are reopened: a
crash between the two leaves a batch whose recipients are still failed, which sends
nothing, and the next retry round finds them again. The counters and report roll-ups
take back the failures (`Increments.reopened`); the runner's recount at completion
checks them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from app.campaigns import ledger
from app.campaigns.batches import insert_pending_batch, now, unfinished_batches
from app.core import rollups
from app.core.statuses import CampaignStatus, DeliveryStatus

RETRIED = (DeliveryStatus.FAILED, DeliveryStatus.DEAD)
RETRYABLE_FROM = (CampaignStatus.COMPLETED,)


async def retry_failed(db: AsyncDatabase, campaign_id: str) -> dict[str, Any] | None:
    """Start a retry round; what it retries (`round`, `retrying`, `by_status`), or None
    when the campaign is not completed (or is a standing one, such as confirmations)."""
    won = await db.campaigns.find_one_and_update(
        {"_id": campaign_id, "status": {"$in": list(RETRYABLE_FROM)},
         "kind": {"$exists": False}},
        {"$set": {"status": CampaignStatus.RUNNING, "retry_started_at": now()},
         "$inc": {"retry_rounds": 1}},
        projection={"retry_rounds": 1, "launch": 1}, return_document=ReturnDocument.AFTER)
    if won is None:
        return None
    round_no, size = won["retry_rounds"], max(1, won["launch"]["batch_size"])
    failed = [doc async for doc in ledger.campaign_deliveries(
        db, campaign_id, {**rollups.DELIVERY_FIELDS, "customer_id": 1})
        if doc.get("status") in RETRIED]
    by_status: Counter[str] = Counter()
    for seq, start in enumerate(range(0, len(failed), size)):
        chunk = failed[start:start + size]
        await insert_pending_batch(db, campaign_id, f"retry{round_no}:{seq}",
                                   [doc["customer_id"] for doc in chunk],
                                   new_recipients=False)
        by_status += await _reopen(db, campaign_id, chunk, round_no)
    if by_status:
        await db.campaigns.update_one({"_id": campaign_id}, {"$inc": {
            f"counts.{status}": -n for status, n in by_status.items()}})
    if not await unfinished_batches(db, campaign_id):  # nothing to send: done again
        await db.campaigns.update_one(
            {"_id": campaign_id, "status": CampaignStatus.RUNNING},
            {"$set": {"status": CampaignStatus.COMPLETED, "completed_at": now()}})
    return {"round": round_no, "retrying": sum(by_status.values()),
            "by_status": dict(by_status)}


async def _reopen(db: AsyncDatabase, campaign_id: str, chunk: list[dict],
                  round_no: int) -> Counter[str]:
    """Set these failed deliveries pending again (those still failed), with the
    roll-ups' take-back; how many of each status were reopened."""
    ids = [doc["_id"] for doc in chunk]
    await db.deliveries.update_many(
        {"_id": {"$in": ids}, "status": {"$in": list(RETRIED)}},
        [{"$set": {"retried_from": "$status", "status": {"$literal": DeliveryStatus.PENDING},
                   "attempts": 0, "retry_round": round_no}}])
    reopened = {doc["_id"] async for doc in db.deliveries.find(
        {"_id": {"$in": ids}, "retry_round": round_no}, {"_id": 1})}
    increments = rollups.Increments()
    counted: Counter[str] = Counter()
    for doc in chunk:
        if doc["_id"] in reopened:
            increments.reopened(campaign_id, doc)
            counted[doc["status"]] += 1
    await rollups.write(db, increments)
    return counted
