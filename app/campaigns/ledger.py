"""A campaign's ledger in MongoDB: one delivery per recipient, and the campaign's
counters.

- `deliveries`: one per (campaign, recipient), `_id` `<campaign>:<customer>`, written
  when the first outcome is known (an `insert` per flush), so the audience is never
  materialised up front. Retries update it by `_id`; a second insert for the same
  recipient fails, which is what makes a rerun send nothing twice.
- `campaigns.counts`: incremented once per collection round by the runner (`$inc`),
  recounted from the deliveries at completion (`reconcile`).
"""

from __future__ import annotations

import logging
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.campaigns.batches import now
from app.core import bulk, rollup_repair, rollups
from app.core.ids import delivery_id
from app.core.rollups import key_safe
from app.core.statuses import (
    FINAL_DELIVERY,
    DeliveryStatus,
)

log = logging.getLogger("operator_comms.campaigns")
TIMELINE_SAMPLES = 600  # the throughput series keeps its last this many samples


def empty_counts() -> dict[str, int]:
    return {"total": 0, **{status: 0 for status in FINAL_DELIVERY}}


async def recorded(db: AsyncDatabase, ids: list[str]) -> dict[str, dict]:
    """The deliveries among these ids that have an outcome: status and attempts."""
    if not ids:
        return {}
    return {doc["_id"]: doc async for doc in db.deliveries.find(
        {"_id": {"$in": ids}}, {"status": 1, "attempts": 1, "created_at": 1, "tried": 1})}


def stage_outcomes(writes: bulk.Writes, inserts: list[dict],
                   updates: list[tuple[str, dict]]) -> dict[int, str]:
    """Queue outcomes: first attempts are inserted, retries update by `_id`. The
    inserts' positions: one refused as a duplicate lost to an earlier record (another
    task sent it)."""
    placed = {writes.insert("deliveries", doc): doc["_id"] for doc in inserts}
    for delivery, fields in updates:
        writes.update("deliveries", {"_id": delivery}, {"$set": fields})
    return placed


async def write_outcomes(db: AsyncDatabase, inserts: list[dict],
                         updates: list[tuple[str, dict]]) -> set[str]:
    """Record outcomes (`stage_outcomes`) as a flush does, per collection; the delivery
    ids whose insert lost to an earlier record."""
    writes = bulk.Writes(db, one_command=False)
    placed = stage_outcomes(writes, inserts, updates)
    return {placed[at] for at in await writes.apply() if at in placed}


def stage_sms_parts(writes: bulk.Writes, parts: list[dict]) -> None:
    """Where each SMS part's receipt finds its delivery: `sms_parts`, `_id` the SMSC's
    message id (an SMSC that reused one keeps the first: a duplicate is refused)."""
    for part in parts:
        writes.insert("sms_parts", part)


def progress_update(inc: dict[str, int], sample: dict | None,
                    sets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counters, the audience seen so far, a timeline sample when one is due ({}: none)."""
    update: dict[str, Any] = {}
    if inc:
        update["$inc"] = inc
    if sets:
        update["$set"] = sets
    if sample is not None:
        update["$push"] = {"timeline": {"$each": [sample], "$slice": -TIMELINE_SAMPLES}}
    return update


async def record_progress(db: AsyncDatabase, campaign_id: str, inc: dict[str, int],
                          sample: dict | None, sets: dict[str, Any] | None = None) -> None:
    """One write: `progress_update`."""
    update = progress_update(inc, sample, sets)
    if update:
        await db.campaigns.update_one({"_id": campaign_id}, update)


AUDIENCE_SEEN = "audience_seen_page"  # the last page counted into counts.total


RECOUNT_IDS_PER_READ = 2_000


async def campaign_deliveries(db: AsyncDatabase, campaign_id: str,
                              fields: dict[str, int]):
    """The campaign's deliveries, found through its batches' recipients (`_id` $in of
    up to RECOUNT_IDS_PER_READ, gathered over batches): the cost follows the campaign,
    not every delivery ever written, and is a read per 2,000 recipients, not per batch."""
    ids: list[str] = []
    async for batch in db.batches.find({"campaign_id": campaign_id}, {"recipients": 1}):
        ids += [delivery_id(campaign_id, c) for c in batch.get("recipients", [])]
        if len(ids) >= RECOUNT_IDS_PER_READ:
            async for doc in db.deliveries.find({"_id": {"$in": ids}}, fields):
                yield doc
            ids = []
    if ids:
        async for doc in db.deliveries.find({"_id": {"$in": ids}}, fields):
            yield doc


async def reconcile(db: AsyncDatabase, campaign_id: str) -> dict[str, int]:
    """Recount from the deliveries themselves (the record), e.g. at completion: the
    campaign's counters, and its report roll-ups (repaired if a writer died between
    its deliveries and their roll-up)."""
    counts: dict[str, int] = {}
    retries = 0
    by_node: dict[str, int] = {}
    by_worker: dict[str, int] = {}
    increments = rollups.Increments()
    async for doc in campaign_deliveries(db, campaign_id, rollups.DELIVERY_FIELDS):
        increments.outcome(campaign_id, doc, None)
        status = doc.get("status")
        counts[status] = counts.get(status, 0) + 1
        if status != DeliveryStatus.SKIPPED:  # every attempt beyond the first was a retry
            retries += max(0, doc.get("attempts", 1) - 1)
        if status == DeliveryStatus.SENT:
            node, worker = key_safe(doc.get("node")), key_safe(doc.get("worker"))
            by_node[node] = by_node.get(node, 0) + 1
            by_worker[worker] = by_worker.get(worker, 0) + 1
    sets: dict[str, Any] = {f"counts.{status}": counts.get(status, 0)
                            for status in FINAL_DELIVERY}
    sets["counts.total"] = sum(counts.get(s, 0)
                               for s in (*FINAL_DELIVERY, DeliveryStatus.PENDING))
    drift = await rollup_repair.reconcile_campaign(db, campaign_id, increments)
    if drift["drifted"]:
        log.warning("campaign %s: %d report roll-ups repaired from its deliveries: %s",
                    campaign_id, drift["drifted"], drift["drift"][:5])
    # rollups_repaired: how many of its roll-up documents were wrong (0 unless a writer
    # died between its deliveries and their roll-up).
    await db.campaigns.update_one({"_id": campaign_id}, {"$set": {
        **sets, "retries": retries, "by_node": by_node, "by_worker": by_worker,
        "rollups_repaired": drift["drifted"]}})
    return counts


def progress_sample(counts: dict[str, int]) -> dict[str, Any]:
    return {"t": now(), **{k: counts.get(k, 0) for k in (
        DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.DEAD)}}
