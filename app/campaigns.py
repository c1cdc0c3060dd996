"""Campaigns and their deliveries in MongoDB: state changes, claims, counters, views.

Exactly once rests on three things here:
- a delivery's `_id` is `<campaign>:<customer>`, so re-creating the deliveries of an
  audience (after a runner restart) can never make a second one;
- the runner claims a batch (`pending` -> `sending`, with a claim token and a lease)
  before a task sends it; the task records each outcome only where its claim still
  holds, and a retry of the task (same token) sends only what was not recorded;
- a claim whose lease ran out (its task is gone) goes back to `pending`.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DESCENDING, InsertOne, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from app.customers import audience_filter
from app.models import CampaignCreate, LaunchOptions

ACTIVE = ("running", "paused")
FINAL_DELIVERY = ("sent", "failed", "dead", "skipped")
TIMELINE_SAMPLES = 600


def now() -> datetime:
    return datetime.now(UTC)


def delivery_id(campaign_id: str, customer_id: str) -> str:
    return f"{campaign_id}:{customer_id}"


def backoff_s(attempts: int, base_s: float = 1.0, cap_s: float = 300.0) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to base, then 2x, 4x..."""
    return random.uniform(0.5, 1.0) * min(cap_s, base_s * 2 ** max(0, attempts - 1))


async def create_campaign(db: AsyncDatabase, spec: CampaignCreate, created_by: str) -> dict:
    doc = {
        "_id": uuid.uuid4().hex[:16],
        "name": spec.name,
        "templates": {"subject": spec.subject, "body_text": spec.body_text,
                      "body_html": spec.body_html},
        "audience": spec.audience.model_dump(),
        "status": "draft",
        "counts": {"total": 0, "sent": 0, "failed": 0, "dead": 0, "skipped": 0},
        "retries": 0,
        "by_node": {},
        "by_worker": {},
        "timeline": [],
        "created_at": now(),
        "created_by": created_by,
    }
    await db.campaigns.insert_one(doc)
    return doc


async def get_campaign(db: AsyncDatabase, campaign_id: str) -> dict | None:
    return await db.campaigns.find_one({"_id": campaign_id})


RUNNER_FIELDS = {"status": 1, "settings": 1, "templates": 1, "audience": 1,
                 "materialized": 1}


async def campaign_state(db: AsyncDatabase, campaign_id: str) -> dict | None:
    """What the runner needs each turn of its loop, without the growing timeline."""
    return await db.campaigns.find_one({"_id": campaign_id}, RUNNER_FIELDS)


async def list_campaigns(db: AsyncDatabase, limit: int = 50) -> list[dict]:
    cursor = db.campaigns.find({}, {"timeline": 0}).sort("created_at", DESCENDING).limit(limit)
    return await cursor.to_list()


async def active_campaign_ids(db: AsyncDatabase) -> list[str]:
    return [doc["_id"] async for doc in db.campaigns.find({"status": {"$in": list(ACTIVE)}},
                                                          {"_id": 1})]


async def launch_campaign(db: AsyncDatabase, campaign_id: str, options: LaunchOptions,
                          connections: int) -> dict | None:
    """draft -> running, counting the audience once; None when not a draft."""
    campaign = await get_campaign(db, campaign_id)
    if campaign is None or campaign["status"] != "draft":
        return None
    total = await db.customers.count_documents(audience_filter(campaign["audience"]))
    settings = {**options.model_dump(), "connections": options.connections or connections}
    won = await db.campaigns.update_one(
        {"_id": campaign_id, "status": "draft"},
        {"$set": {"status": "running", "settings": settings, "counts.total": total,
                  "launched_at": now(), "materialized": False}})
    return await get_campaign(db, campaign_id) if won.modified_count == 1 else None


async def change_status(db: AsyncDatabase, campaign_id: str, allowed_from: tuple[str, ...],
                        to: str, **extra: Any) -> bool:
    result = await db.campaigns.update_one(
        {"_id": campaign_id, "status": {"$in": list(allowed_from)}},
        {"$set": {"status": to, f"{to}_at": now(), **extra}},
    )
    return result.modified_count == 1


async def fail_campaign(db: AsyncDatabase, campaign_id: str, reason: str) -> bool:
    """Stop a campaign for a reason that every delivery would share (e.g. bad SMTP login)."""
    return await change_status(db, campaign_id, ACTIVE, "failed", failure_reason=reason)


# Deliveries: created from the audience, claimed in batches ----------------------------


async def materialize_audience(db: AsyncDatabase, campaign_id: str, audience: dict,
                               chunk: int = 1000) -> int:
    """Create a pending delivery per audience member (idempotent: safe to run again)."""
    created, pending = 0, []
    async for customer in db.customers.find(audience_filter(audience), {"_id": 1}):
        pending.append(customer["_id"])
        if len(pending) >= chunk:
            created += await materialize(db, campaign_id, pending)
            pending = []
    if pending:
        created += await materialize(db, campaign_id, pending)
    return created


async def materialize(db: AsyncDatabase, campaign_id: str, customer_ids: list[str]) -> int:
    """Create pending deliveries for these customers; return how many were new."""
    created = now()
    ops = [InsertOne({"_id": delivery_id(campaign_id, cid), "campaign_id": campaign_id,
                      "customer_id": cid, "status": "pending", "attempts": 0, "claim": None,
                      "next_attempt_at": created, "created_at": created})
           for cid in customer_ids]
    if not ops:
        return 0
    try:
        result = await db.deliveries.bulk_write(ops, ordered=False)
        return result.inserted_count
    except BulkWriteError as exc:
        if any(err["code"] != 11000 for err in exc.details["writeErrors"]):
            raise
        return exc.details["nInserted"]


async def set_materialized(db: AsyncDatabase, campaign_id: str) -> None:
    await db.campaigns.update_one({"_id": campaign_id}, {"$set": {"materialized": True}})


async def due_pending(db: AsyncDatabase, campaign_id: str, limit: int) -> list[str]:
    """Ids of pending deliveries whose time has come (new ones, and retries after backoff)."""
    cursor = db.deliveries.find({"campaign_id": campaign_id, "status": "pending",
                                 "next_attempt_at": {"$lte": now()}}, {"_id": 1}).limit(limit)
    return [doc["_id"] async for doc in cursor]


async def unfinished(db: AsyncDatabase, campaign_id: str) -> int:
    return await db.deliveries.count_documents(
        {"campaign_id": campaign_id, "status": {"$in": ["pending", "sending"]}})


# Claims ------------------------------------------------------------------------------


async def claim_batch(db: AsyncDatabase, ids: list[str], claim_token: str,
                      lease_s: float) -> int:
    """Claim these deliveries if still pending (`pending` -> `sending`); return how many."""
    if not ids:
        return 0
    # While sending, next_attempt_at holds the lease's end: one index serves both
    # "what is due" and "whose lease ran out" (every index costs each status change).
    lease_end = now() + timedelta(seconds=lease_s)
    fields = {"status": "sending", "claim": claim_token, "claimed_at": now(),
              "next_attempt_at": lease_end}
    result = await db.deliveries.bulk_write(
        [UpdateOne({"_id": i, "status": "pending"}, {"$set": fields}) for i in ids],
        ordered=False)
    return result.modified_count


async def claimed(db: AsyncDatabase, campaign_id: str, claim_token: str,
                  worker: dict[str, Any], lease_s: float) -> list[dict]:
    """The deliveries a task holds and has not recorded yet; stamped with its worker,
    their lease renewed from now (the task may have waited long for a worker)."""
    query = {"campaign_id": campaign_id, "claim": claim_token, "status": "sending"}
    await db.deliveries.update_many(
        query, {"$set": {**worker, "next_attempt_at": now() + timedelta(seconds=lease_s)}})
    return await db.deliveries.find(query).to_list()


async def renew_lease(db: AsyncDatabase, campaign_id: str, claim_token: str,
                      lease_s: float) -> int:
    """Extend the claim's lease; how many deliveries it still holds (0: lost or done)."""
    result = await db.deliveries.update_many(
        {"campaign_id": campaign_id, "claim": claim_token, "status": "sending"},
        {"$set": {"next_attempt_at": now() + timedelta(seconds=lease_s)}})
    return result.matched_count


RELEASED = {"status": "pending", "claim": None}


async def release(db: AsyncDatabase, campaign_id: str, claim_token: str,
                  ids: list[str] | None = None) -> int:
    """Give back claimed, unsent deliveries (pause, cancel, a failed task)."""
    fields = {**RELEASED, "next_attempt_at": now()}
    if ids is None:
        result = await db.deliveries.update_many(
            {"campaign_id": campaign_id, "claim": claim_token, "status": "sending"},
            {"$set": fields})
        return result.modified_count
    if not ids:
        return 0
    result = await db.deliveries.bulk_write(
        [UpdateOne({"_id": i, "status": "sending", "claim": claim_token}, {"$set": fields})
         for i in ids], ordered=False)
    return result.modified_count


async def requeue_expired(db: AsyncDatabase, campaign_id: str) -> int:
    """Claims whose task is gone (no lease renewal) go back to pending."""
    result = await db.deliveries.update_many(
        {"campaign_id": campaign_id, "status": "sending", "next_attempt_at": {"$lt": now()}},
        {"$set": {**RELEASED, "next_attempt_at": now()}})
    return result.modified_count


# Counters and views ----------------------------------------------------------------


def key_safe(text: str) -> str:
    return text.replace(".", "_").replace("$", "_")


async def add_counts(db: AsyncDatabase, campaign_id: str, counts: dict[str, int],
                     retries: int, node: str, worker: str) -> None:
    inc: dict[str, int] = {f"counts.{status}": n for status, n in counts.items()
                           if status in FINAL_DELIVERY and n}
    if retries:
        inc["retries"] = retries
    if counts.get("sent"):
        inc[f"by_node.{key_safe(node)}"] = counts["sent"]
        inc[f"by_worker.{key_safe(worker)}"] = counts["sent"]
    if inc:
        await db.campaigns.update_one({"_id": campaign_id}, {"$inc": inc})


async def delivery_counts(db: AsyncDatabase, campaign_id: str) -> dict[str, int]:
    pipeline = [{"$match": {"campaign_id": campaign_id}},
                {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
    return {row["_id"]: row["n"] async for row in await db.deliveries.aggregate(pipeline)}


async def reconcile(db: AsyncDatabase, campaign_id: str) -> dict[str, int]:
    """Recount from the deliveries themselves (the record), e.g. at completion."""
    counts = await delivery_counts(db, campaign_id)
    sets = {f"counts.{status}": counts.get(status, 0) for status in FINAL_DELIVERY}
    pipeline = [{"$match": {"campaign_id": campaign_id, "status": "sent"}},
                {"$group": {"_id": {"node": "$node", "worker": "$worker"}, "n": {"$sum": 1}}}]
    by_node: dict[str, int] = {}
    by_worker: dict[str, int] = {}
    async for row in await db.deliveries.aggregate(pipeline):
        node, worker = key_safe(row["_id"].get("node") or "?"), key_safe(
            row["_id"].get("worker") or "?")
        by_node[node] = by_node.get(node, 0) + row["n"]
        by_worker[worker] = by_worker.get(worker, 0) + row["n"]
    await db.campaigns.update_one({"_id": campaign_id},
                                  {"$set": {**sets, "by_node": by_node, "by_worker": by_worker}})
    return counts


async def sample_progress(db: AsyncDatabase, campaign_id: str) -> None:
    campaign = await db.campaigns.find_one({"_id": campaign_id}, {"counts": 1})
    if campaign is None:
        return
    counts = campaign["counts"]
    sample = {"t": now(), **{k: counts.get(k, 0) for k in ("sent", "failed", "dead")}}
    await db.campaigns.update_one(
        {"_id": campaign_id},
        {"$push": {"timeline": {"$each": [sample], "$slice": -TIMELINE_SAMPLES}}})


def campaign_view(doc: dict, in_flight: int | None = None) -> dict[str, Any]:
    """The API's picture of a campaign: counts, throughput, ETA, spread over workers."""
    counts = dict(doc.get("counts", {}))
    done = sum(counts.get(k, 0) for k in FINAL_DELIVERY)
    counts["pending"] = max(0, counts.get("total", 0) - done)
    launched, finished = doc.get("launched_at"), doc.get(f"{doc['status']}_at")
    end = finished if doc["status"] in ("completed", "cancelled", "failed") and finished else now()
    elapsed = (end - launched).total_seconds() if launched else 0.0
    throughput = counts.get("sent", 0) / elapsed if elapsed > 0 else 0.0
    recent = _recent_rate(doc.get("timeline", []))
    rate = recent if recent is not None else throughput
    eta = counts["pending"] / rate if doc["status"] == "running" and rate > 0 else None
    view = {
        "id": doc["_id"], "name": doc["name"], "status": doc["status"],
        "audience": doc.get("audience"), "templates": doc.get("templates"),
        "settings": doc.get("settings"), "counts": counts, "retries": doc.get("retries", 0),
        "progress": round(done / counts["total"], 4) if counts.get("total") else 0.0,
        "throughput_per_s": round(throughput, 2),
        "recent_throughput_per_s": round(recent, 2) if recent is not None else None,
        "eta_s": round(eta, 1) if eta is not None else None,
        "elapsed_s": round(elapsed, 2),
        "by_node": doc.get("by_node", {}), "by_worker": doc.get("by_worker", {}),
        "timeline": [{**s, "t": s["t"].isoformat()} for s in doc.get("timeline", [])],
        "failure_reason": doc.get("failure_reason"),
        "created_at": doc["created_at"].isoformat(),
        "launched_at": launched.isoformat() if launched else None,
    }
    if in_flight is not None:
        view["tasks_in_flight"] = in_flight
    return view


def _recent_rate(timeline: list[dict], window: int = 10) -> float | None:
    if len(timeline) < 2:
        return None
    first, last = timeline[max(0, len(timeline) - window)], timeline[-1]
    seconds = (last["t"] - first["t"]).total_seconds()
    return (last["sent"] - first["sent"]) / seconds if seconds > 0 else None
