"""Campaigns, their send batches and their deliveries in MongoDB.

The unit of database work is a batch, never a message:

- `batches`: one document per batch of up to `batch_size` recipients, `_id`
  `<campaign>:<seq>`. The runner creates it already claimed for the task it is about
  to submit (one insert), with the audience position after it, so a restarted runner
  continues from the last batch. A batch lives through its retries: when its task
  ends it is `done`, or back to `pending` with only the recipients that need another
  attempt (`attempt` + 1, `not_before` after the backoff), or back to `pending`
  unchanged when the task was stopped (pause, cancel, a lost lease).
- `deliveries`: one per (campaign, recipient), `_id` `<campaign>:<customer>`, written
  when the first outcome is known (an `insert_many` per flush), so the audience is
  never materialised up front. Retries update it by `_id`.
- `campaigns`: counters incremented once per collection round by the runner
  (`$inc`), recounted from the deliveries at completion.

Exactly once rests on: the delivery `_id` (a second insert for the same recipient
fails, and every run of a batch but the first of a fresh claim reads which of its
recipients already have an outcome), the claim token on the batch (only its holder may
renew or close it; every run has a claim of its own), and the lease (`not_before` of a
claimed batch), which begins when the runner claims the batch, which a running task
renews, and whose expiry gives a dead task's batch back.

Leases are written and judged on one clock, the database server's: their ends are set
by update pipelines from `$$NOW` (`_lease_end`), and expiry is judged against the
server's time (`database_now`), so no node's clock decides whether a lease ran out. A
task needs no clock but its own monotonic one (`app.campaigns.sending`): it sends only until
`lease_s` after it issued its last successful renewal, which is never later than the
end the server wrote.
"""

from __future__ import annotations

import logging
import random
import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app.campaigns.models import CampaignCreate, LaunchOptions
from app.core import bulk, rollup_repair, rollups
from app.core.ids import batch_id, delivery_id
from app.core.paging import WHOLE, newest_first
from app.core.rollups import key_safe
from app.core.statuses import (
    ACTIVE,
    FINAL_DELIVERY,
    FINISHED,
    BatchStatus,
    CampaignStatus,
    DeliveryStatus,
)

log = logging.getLogger("operator_comms.campaigns")
TIMELINE_SAMPLES = 600
OPEN_BATCH = [BatchStatus.PENDING, BatchStatus.CLAIMED]


def now() -> datetime:
    return datetime.now(UTC)


def new_claim() -> str:
    return uuid.uuid4().hex


def backoff_s(attempts: int, base_s: float = 1.0, cap_s: float = 300.0) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to base, then 2x, 4x..."""
    return random.uniform(0.5, 1.0) * min(cap_s, base_s * 2 ** max(0, attempts - 1))


def empty_counts() -> dict[str, int]:
    return {"total": 0, **{status: 0 for status in FINAL_DELIVERY}}


async def create_campaign(db: AsyncDatabase, spec: CampaignCreate, created_by: str) -> dict:
    doc = {
        "_id": uuid.uuid4().hex[:16],
        "name": spec.name,
        "templates": {"subject": spec.subject, "body_text": spec.body_text,
                      "body_html": spec.body_html},
        "audience": spec.audience.model_dump(),
        "tracking": spec.tracking.model_dump(),
        "channel": spec.channel,
        "status": CampaignStatus.DRAFT,
        "counts": empty_counts(),
        "retries": 0,
        "by_node": {},
        "by_worker": {},
        "timeline": [],
        "created_at": now(),
        "created_by": created_by,
    }
    await db.campaigns.insert_one(doc)
    return doc


async def record_bounce(db: AsyncDatabase, delivery: dict, fields: dict[str, Any]) -> bool:
    """A sent delivery bounced: failed now, with the campaign's counters and the
    reports' roll-ups moved with it. False if it was no longer `sent` (counted once)."""
    fields = {**fields, "status": DeliveryStatus.FAILED}
    moved = await db.deliveries.update_one(
        {"_id": delivery["_id"], "status": DeliveryStatus.SENT}, {"$set": fields})
    if not moved.modified_count:
        return False
    await db.campaigns.update_one({"_id": delivery["campaign_id"]},
                                  {"$inc": {"counts.sent": -1, "counts.failed": 1}})
    increments = rollups.Increments()
    increments.bounced(delivery["campaign_id"], delivery, fields)
    await rollups.write(db, increments)
    return True


async def ensure_standing_campaign(db: AsyncDatabase, campaign_id: str, *, name: str,
                                   kind: str, tag: str, templates: dict[str, Any],
                                   options: dict[str, Any], created_by: str) -> None:
    """A campaign that stays (e.g. signup confirmations): created complete if missing,
    its templates set to these; reopened by `reopen_standing_campaign`."""
    started = now()
    await db.campaigns.update_one(
        {"_id": campaign_id},
        {"$setOnInsert": {
            "name": name, "kind": kind, "audience": {"tag": tag},
            "status": CampaignStatus.COMPLETED, "counts": empty_counts(),
            "retries": 0, "by_node": {}, "by_worker": {}, "timeline": [],
            "launch": options, "audience_done": True, "audience_pages": 0,
            "created_at": started, "launched_at": started, "completed_at": started,
            "created_by": created_by},
         "$set": {"templates": templates}},
        upsert=True)


async def add_recipient(db: AsyncDatabase, campaign_id: str, key: str,
                        customer_id: str) -> bool:
    """One more recipient for a standing campaign, in a batch of its own keyed by `key`
    (at most one ever); True if new."""
    created = await insert_pending_batch(db, campaign_id, key, [customer_id])
    if created:
        await db.campaigns.update_one({"_id": campaign_id}, {"$inc": {"counts.total": 1}})
    return created


async def reopen_standing_campaign(db: AsyncDatabase, campaign_id: str) -> bool:
    """Running again if it holds unsent batches; True when its runner should run."""
    if await unfinished_batches(db, campaign_id) == 0:
        return False
    await db.campaigns.update_one(
        {"_id": campaign_id, "status": CampaignStatus.COMPLETED},
        {"$set": {"status": CampaignStatus.RUNNING, "launched_at": now()}})
    doc = await db.campaigns.find_one({"_id": campaign_id}, {"status": 1})
    return doc is not None and doc["status"] == CampaignStatus.RUNNING


async def get_campaign(db: AsyncDatabase, campaign_id: str) -> dict | None:
    return await db.campaigns.find_one({"_id": campaign_id})


RUNNER_FIELDS = {"status": 1, "launch": 1, "templates": 1, "audience": 1, "tracking": 1,
                 "channel": 1,
                 "audience_pages": 1, "audience_done": 1, "audience_seen_page": 1,
                 "counts": 1, "retries": 1}


async def campaign_state(db: AsyncDatabase, campaign_id: str) -> dict | None:
    """What the runner needs, without the growing timeline."""
    return await db.campaigns.find_one({"_id": campaign_id}, RUNNER_FIELDS)


async def campaign_status(db: AsyncDatabase, campaign_id: str) -> str | None:
    doc = await db.campaigns.find_one({"_id": campaign_id}, {"status": 1})
    return doc["status"] if doc else None


async def list_campaigns(db: AsyncDatabase, limit: int = 50, cursor: str | None = None
                         ) -> tuple[list[dict], str | None]:
    """(a page of campaigns, newest first, without their timelines; the next cursor)."""
    # Campaigns number in the hundreds: one query (the live dashboard asks each second).
    return await newest_first(db.campaigns, {}, "created_at", limit, cursor, {"timeline": 0},
                              windows=WHOLE)


async def active_campaign_ids(db: AsyncDatabase) -> list[str]:
    return [doc["_id"] async for doc in db.campaigns.find({"status": {"$in": list(ACTIVE)}},
                                                          {"_id": 1})]


async def launch_campaign(db: AsyncDatabase, campaign_id: str, options: LaunchOptions,
                          connections: int, audience_pages: int) -> dict | None:
    """draft -> running; None when not a draft. The audience is counted as the runner
    reads it, a page at a time (`counts.total` grows, `audience_done` at the end), so
    a launch over a million customers answers at once."""
    launch = {**options.model_dump(), "connections": options.connections or connections}
    won = await db.campaigns.update_one(
        {"_id": campaign_id, "status": CampaignStatus.DRAFT},
        {"$set": {"status": CampaignStatus.RUNNING, "launch": launch, "launched_at": now(),
                  "audience_pages": audience_pages, "audience_done": False,
                  "audience_seen_page": -1, "counts.total": 0}})
    return await get_campaign(db, campaign_id) if won.modified_count == 1 else None


async def change_status(db: AsyncDatabase, campaign_id: str, allowed_from: tuple[str, ...],
                        to: str, event: dict[str, Any] | None = None, **extra: Any) -> bool:
    """Move the campaign to `to` if it is in `allowed_from`; with `event` (an
    `app.integrations.outbox.entry`), the event goes in the same update, for the caller
    to hand on."""
    result = await db.campaigns.update_one(
        {"_id": campaign_id, "status": {"$in": list(allowed_from)}},
        {"$set": {"status": to, f"{to}_at": now(), **extra},
         **({"$push": {"outbox": event}} if event else {})},
    )
    return result.modified_count == 1


async def fail_campaign(db: AsyncDatabase, campaign_id: str, reason: str) -> bool:
    """Stop a campaign for a reason that every delivery would share (e.g. bad SMTP login)."""
    return await change_status(db, campaign_id, ACTIVE, CampaignStatus.FAILED,
                               failure_reason=reason)


async def set_audience_done(db: AsyncDatabase, campaign_id: str) -> None:
    await db.campaigns.update_one({"_id": campaign_id}, {"$set": {"audience_done": True}})


# Batches ----------------------------------------------------------------------------------


def _lease_end(lease_s: float) -> dict[str, Any]:
    """The database's now plus the lease, for an update pipeline."""
    return {"$add": ["$$NOW", round(lease_s * 1000)]}


async def database_now(db: AsyncDatabase) -> datetime:
    """The database server's time (the clock leases are written with)."""
    at = (await db.command("hello"))["localTime"]  # naive: commands decode without tz
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def insert_claimed_batch(db: AsyncDatabase, campaign_id: str, seq: int,
                               customer_ids: list[str], position: list, claim: str,
                               lease_s: float) -> str | None:
    """A new batch of the audience, claimed at birth; None if a batch `seq` exists
    (a restarted runner that had created it already). One command: an upsert that
    only inserts, so the lease's end comes from the database's clock."""
    _id = batch_id(campaign_id, seq)
    # customer_ids narrow to what is left to send; recipients stay, for the recount.
    # While claimed, not_before holds the lease's end: one index serves both "what is
    # due" and "whose lease ran out".
    fields = {"campaign_id": campaign_id, "seq": seq, "customer_ids": customer_ids,
              "recipients": customer_ids, "position": position, "attempt": 0,
              "status": BatchStatus.CLAIMED, "claim": claim}
    try:
        await db.batches.update_one(
            {"_id": _id, "status": {"$exists": False}},
            [{"$set": {**{k: {"$literal": v} for k, v in fields.items()},
                       "created_at": "$$NOW", "not_before": _lease_end(lease_s)}}],
            upsert=True)
    except DuplicateKeyError:
        return None
    return _id


async def insert_pending_batch(db: AsyncDatabase, campaign_id: str, key: str,
                               customer_ids: list[str]) -> bool:
    """A batch created outside the runner (a signup confirmation); False if it exists."""
    created = now()
    try:
        await db.batches.insert_one({
            "_id": f"{campaign_id}:{key}", "campaign_id": campaign_id, "seq": None,
            "customer_ids": customer_ids, "recipients": customer_ids, "attempt": 0,
            "status": BatchStatus.PENDING, "claim": None,
            "not_before": created, "created_at": created})
    except DuplicateKeyError:
        return False
    return True


async def last_position(db: AsyncDatabase, campaign_id: str) -> tuple[int, list | None]:
    """(next seq, audience position after the newest batch) for a restarted runner."""
    newest = await db.batches.find(
        {"campaign_id": campaign_id}, {"seq": 1, "position": 1}).sort(
        "seq", DESCENDING).limit(1).to_list()
    if not newest or newest[0].get("seq") is None:
        return 0, None
    return newest[0]["seq"] + 1, newest[0]["position"]


async def open_batches(db: AsyncDatabase, campaign_id: str) -> list[dict]:
    """Batches not done yet: pending ones (retries, stopped, queued confirmations) and
    claimed ones (a task has them, or had them before it died)."""
    fields = {"status": 1, "not_before": 1, "attempt": 1, "claim": 1}
    return [doc async for doc in db.batches.find(
        {"campaign_id": campaign_id, "status": {"$in": OPEN_BATCH}}, fields)]


async def claim_batch(db: AsyncDatabase, batch: str, claim: str, lease_s: float) -> dict | None:
    """Claim a pending batch under a new claim; the batch (its recipients, attempt) or
    None if it is not pending. One command."""
    return await db.batches.find_one_and_update(
        {"_id": batch, "status": BatchStatus.PENDING},
        [{"$set": {"status": BatchStatus.CLAIMED, "claim": claim,
                   "not_before": _lease_end(lease_s)}}],
        projection={"customer_ids": 1, "attempt": 1})


async def renew_lease(db: AsyncDatabase, batch: str, claim: str, lease_s: float,
                      worker: dict[str, Any] | None = None) -> bool:
    """Extend the claim's lease (and note where its task runs); False when the claim is
    gone (requeued or closed)."""
    fields: dict[str, Any] = {"not_before": _lease_end(lease_s)}
    if worker is not None:
        fields["worker"] = {"$literal": worker}
    result = await db.batches.update_one({"_id": batch, "claim": claim}, [{"$set": fields}])
    return result.matched_count == 1


def close_update(remaining: list[str], attempt: int, backoff_s: float = 0.0
                 ) -> list[dict[str, Any]]:
    """The claim holder's close of its run, an update pipeline: done when nothing
    remains, else pending again with the recipients still to send at `attempt`, due
    `backoff_s` after now on the database's clock (filter: `_id` and claim)."""
    if remaining:
        fields: dict[str, Any] = {"status": BatchStatus.PENDING,
                                  "customer_ids": {"$literal": remaining}, "attempt": attempt,
                                  "not_before": _lease_end(backoff_s)}
    else:
        fields = {"status": BatchStatus.DONE, "done_at": "$$NOW"}
    return [{"$set": {**fields, "claim": None}}]


async def close_batch(db: AsyncDatabase, batch: str, claim: str, *, remaining: list[str],
                      attempt: int, backoff_s: float = 0.0) -> bool:
    """Close a run on its own (see `close_update`); False when the claim was lost. Under
    a runner, the close goes with its counters instead (`app.campaigns.sending.stage_finished`)."""
    result = await db.batches.update_one({"_id": batch, "claim": claim},
                                         close_update(remaining, attempt, backoff_s))
    return result.matched_count == 1


async def release_batch(db: AsyncDatabase, batch: str, claim: str) -> bool:
    """Give a claimed batch back unchanged: its task was cancelled (pause, cancel) and
    stopped, or never started."""
    result = await db.batches.update_one(
        {"_id": batch, "claim": claim},
        [{"$set": {"status": BatchStatus.PENDING, "claim": None, "not_before": "$$NOW"}}])
    return result.matched_count == 1


async def requeue_expired(db: AsyncDatabase, campaign_id: str,
                          keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Claimed batches whose lease ran out by the database's clock (their task is gone,
    or cut off) go back to pending, except those whose task is known to be running
    (`keep`). Each only under the claim it was seen with: a batch renewed or claimed
    anew meanwhile stays as it is. Three commands when any expired, else two."""
    at = await database_now(db)
    expired = [doc async for doc in db.batches.find(
        {"campaign_id": campaign_id, "status": BatchStatus.CLAIMED, "not_before": {"$lt": at}},
        {"_id": 1, "claim": 1}) if doc["_id"] not in keep]
    if expired:
        await db.batches.bulk_write([UpdateOne(
            {"_id": doc["_id"], "claim": doc["claim"], "status": BatchStatus.CLAIMED,
             "not_before": {"$lt": at}},
            [{"$set": {"status": BatchStatus.PENDING, "claim": None, "not_before": "$$NOW"}}])
            for doc in expired], ordered=False)
    return [doc["_id"] for doc in expired]


async def unfinished_batches(db: AsyncDatabase, campaign_id: str) -> int:
    return await db.batches.count_documents(
        {"campaign_id": campaign_id, "status": {"$in": OPEN_BATCH}})


# Deliveries --------------------------------------------------------------------------------


async def recorded(db: AsyncDatabase, ids: list[str]) -> dict[str, dict]:
    """The deliveries among these ids that have an outcome: status and attempts."""
    if not ids:
        return {}
    return {doc["_id"]: doc async for doc in db.deliveries.find(
        {"_id": {"$in": ids}}, {"status": 1, "attempts": 1, "created_at": 1})}


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


# Counters and views --------------------------------------------------------------------


def summary_increments(summary: dict) -> dict[str, int]:
    """The `$inc` for one task's outcomes (its summary)."""
    inc: dict[str, int] = {f"counts.{status}": n for status, n in summary["counts"].items()
                           if status in FINAL_DELIVERY and n}
    if summary.get("retries"):
        inc["retries"] = summary["retries"]
    sent = summary["counts"].get(DeliveryStatus.SENT, 0)
    if sent:
        inc[f"by_node.{key_safe(summary['node'])}"] = sent
        inc[f"by_worker.{key_safe(summary['worker'])}"] = sent
    return inc


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


def campaign_view(doc: dict, in_flight: int | None = None) -> dict[str, Any]:
    """The API's picture of a campaign: counts, throughput, ETA, spread over workers."""
    sms = doc.get("channel") == "sms"
    counts = {**empty_counts(), **{kind: 0 for kind in rollups.ENGAGEMENT},
              **({"delivered": 0, "undeliverable": 0} if sms else {}),
              **doc.get("counts", {})}
    done = sum(counts.get(k, 0) for k in FINAL_DELIVERY)
    sent = counts[DeliveryStatus.SENT]
    attempted = sent + counts[DeliveryStatus.FAILED] + counts[DeliveryStatus.DEAD]
    counts[DeliveryStatus.PENDING] = max(0, counts.get("total", 0) - done)
    launched, finished = doc.get("launched_at"), doc.get(f"{doc['status']}_at")
    end = finished if doc["status"] in FINISHED and finished else now()
    elapsed = (end - launched).total_seconds() if launched else 0.0
    throughput = counts.get(DeliveryStatus.SENT, 0) / elapsed if elapsed > 0 else 0.0
    recent = _recent_rate(doc.get("timeline", []))
    rate = recent if recent is not None else throughput
    running = doc["status"] == CampaignStatus.RUNNING
    eta = counts[DeliveryStatus.PENDING] / rate if running and rate > 0 else None
    view = {
        "id": doc["_id"], "name": doc["name"], "status": doc["status"],
        "audience": doc.get("audience"), "templates": doc.get("templates"),
        "launch": doc.get("launch"), "counts": counts, "retries": doc.get("retries", 0),
        # False while the runner is still streaming the audience (total still growing).
        "audience_counted": bool(doc.get("audience_done",
                                                doc["status"] != CampaignStatus.RUNNING)),
        "progress": round(done / counts["total"], 4) if counts.get("total") else 0.0,
        # delivered: for email, accepted by the relay and not bounced since, of those
        # attempted; for SMS, receipted as delivered to the handset, of those sent.
        # opened, clicked: of those sent (counted when tracking is on).
        "rates": {"delivered": (round(counts["delivered"] / sent, 4) if sent else 0.0) if sms
                  else (round(sent / attempted, 4) if attempted else 0.0),
                  **{kind: round(counts[kind] / sent, 4) if sent else 0.0
                     for kind in rollups.ENGAGEMENT}},
        "tracking": doc.get("tracking") or {"opens": False, "clicks": False},
        "channel": doc.get("channel", "email"),
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
    sent = DeliveryStatus.SENT
    return (last[sent] - first[sent]) / seconds if seconds > 0 else None
