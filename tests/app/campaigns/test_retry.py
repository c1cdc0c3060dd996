"""Retry failed against the real wire protocol (no Ray): one round at a time, exactly the
failed and dead deliveries reopened, in batches of their own, with the counters and the
report roll-ups taking their failures back."""

from __future__ import annotations

import asyncio

from app.audience.models import Audience
from app.campaigns import batches, ledger, retry
from app.campaigns import records as campaigns
from app.campaigns.models import CampaignCreate, LaunchOptions
from app.core import rollup_repair, rollups
from app.core.ids import delivery_id
from app.core.statuses import BatchStatus, CampaignStatus, DeliveryStatus

OUTCOMES = {"c1": DeliveryStatus.SENT, "c2": DeliveryStatus.DEAD, "c3": DeliveryStatus.FAILED,
            "c4": DeliveryStatus.SKIPPED, "c5": DeliveryStatus.DEAD}


async def _completed(db) -> str:
    """A completed campaign of five recipients, one of each outcome (two dead), its
    roll-ups and counters as the runner leaves them."""
    doc = await campaigns.create_campaign(db, CampaignCreate(
        name="spring", subject="Hi", body_text="Plan {{ plan }}",
        audience=Audience(tag="t")), created_by="test")
    cid = doc["_id"]
    await campaigns.launch_campaign(db, cid, LaunchOptions(batch_size=2), 1, 1)
    await batches.insert_claimed_batch(db, cid, 0, list(OUTCOMES), [0, "c5"], "k",
                                       lease_s=30)
    at = batches.now()
    docs = [{"_id": delivery_id(cid, c), "campaign_id": cid, "customer_id": c,
             "status": s, "attempts": 3 if s == DeliveryStatus.DEAD else 1,
             "last_code": {"dead": 451, "failed": 550}.get(s, 250 if s == "sent" else None),
             "created_at": at, "last_attempt_at": at,
             **({"sent_at": at, "latency_ms": 5.0, "node": "n", "worker": "w"}
                if s == DeliveryStatus.SENT else {})} for c, s in OUTCOMES.items()]
    await ledger.write_outcomes(db, docs, [])
    increments = rollups.Increments()
    for d in docs:
        increments.outcome(cid, d, None)
    await rollups.write(db, increments)
    await db.batches.update_one({"campaign_id": cid}, {"$set": {
        "status": BatchStatus.DONE, "customer_ids": []}})
    await ledger.reconcile(db, cid)
    await db.campaigns.update_one({"_id": cid}, {"$set": {
        "status": CampaignStatus.COMPLETED, "audience_done": True}})
    return cid


async def test_one_round_reopens_exactly_the_failed_and_dead(db) -> None:
    cid = await _completed(db)
    first, second = await asyncio.gather(retry.retry_failed(db, cid),
                                         retry.retry_failed(db, cid))
    started = first or second
    assert (first is None) != (second is None)  # one round at a time
    assert started == {"round": 1, "retrying": 3, "by_status": {"dead": 2, "failed": 1}}
    assert await campaigns.campaign_status(db, cid) == CampaignStatus.RUNNING

    open_batches = [b async for b in db.batches.find(
        {"campaign_id": cid, "status": BatchStatus.PENDING})]
    assert sorted(c for b in open_batches for c in b["customer_ids"]) == ["c2", "c3", "c5"]
    assert all(len(b["customer_ids"]) <= 2 and b["recipients"] == [] for b in open_batches)
    after = {d["customer_id"]: d async for d in db.deliveries.find({"campaign_id": cid})}
    for c in ("c2", "c3", "c5"):
        assert after[c]["status"] == DeliveryStatus.PENDING and after[c]["attempts"] == 0
        assert after[c]["retried_from"] == OUTCOMES[c] and after[c]["retry_round"] == 1
    assert after["c1"]["status"] == "sent" and after["c4"]["status"] == "skipped"
    assert "retry_round" not in after["c1"]

    counts = (await campaigns.get_campaign(db, cid))["counts"]
    assert (counts["dead"], counts["failed"], counts["sent"], counts["total"]) == (0, 0, 1, 5)
    # The roll-ups agree with the deliveries as they are now (nothing to repair), and
    # the recount finds each delivery once (the retry batches name no new recipient).
    stored = await db.rollups.find({"campaign_id": cid}).to_list()
    drift = await rollup_repair.reconcile(db, (await _folded(db, cid)).docs(), stored,
                                          apply=False)
    assert drift["drifted"] == 0, drift
    assert (await ledger.reconcile(db, cid)) == {"sent": 1, "skipped": 1, "pending": 3}


async def test_only_a_completed_campaign_retries(db) -> None:
    cid = await _completed(db)
    await db.campaigns.update_one({"_id": cid}, {"$set": {"status": "paused"}})
    assert await retry.retry_failed(db, cid) is None
    draft = await campaigns.create_campaign(db, CampaignCreate(
        name="d", subject="Hi", body_text="x", audience=Audience(tag="t")), created_by="t")
    assert await retry.retry_failed(db, draft["_id"]) is None


async def test_a_campaign_with_nothing_failed_is_completed_again(db) -> None:
    cid = await _completed(db)
    await db.deliveries.update_many({"campaign_id": cid}, {"$set": {"status": "sent"}})
    assert await retry.retry_failed(db, cid) == {"round": 1, "retrying": 0, "by_status": {}}
    assert await campaigns.campaign_status(db, cid) == CampaignStatus.COMPLETED


async def _folded(db, cid: str) -> rollups.Increments:
    increments = rollups.Increments()
    async for doc in ledger.campaign_deliveries(db, cid, rollups.DELIVERY_FIELDS):
        increments.outcome(cid, doc, None)
    return increments
