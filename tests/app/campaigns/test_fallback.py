"""Fallback after the send, against the real database: a due wait moves its delivery on
(pending, what the channel came to kept in `tried`, a pending batch stored for it), a
wait that is not due stays, and statuses applied by overlapping rounds count once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from app.audience.models import Audience
from app.campaigns import fallback, ledger
from app.campaigns import records as campaigns
from app.campaigns.models import CampaignCreate
from app.channels import statuses
from app.core.ids import delivery_id

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


async def _sent(db, n: int, *, awaits: str | None = "read") -> tuple[str, list[str]]:
    campaign = await campaigns.create_campaign(db, CampaignCreate(
        name="rule", channel="whatsapp", fallback=["sms"], fallback_after_s=60,
        confirm="read", body_text="Hi", audience=Audience(tag="t")), created_by="test")
    cid = campaign["_id"]
    docs = [{"_id": delivery_id(cid, f"c{i}"), "campaign_id": cid, "customer_id": f"c{i}",
             "status": "sent", "attempts": 1, "created_at": NOW, "last_attempt_at": NOW,
             "sent_at": NOW, "channel": "whatsapp", "wa_message_id": f"wamid.{i}",
             "node": "n", "worker": "w", "latency_ms": 5.0,
             **({"awaits": awaits} if awaits else {})} for i in range(n)]
    await ledger.write_outcomes(db, docs, [])
    await db.campaigns.update_one({"_id": cid}, {"$inc": {"counts.sent": n}})
    return cid, [d["_id"] for d in docs]


async def test_a_due_wait_moves_its_delivery_on_and_one_not_due_stays(db) -> None:
    cid, [due, later] = await _sent(db, 2)
    confirm = fallback.Confirm(60, "read")
    await db.fallback_waits.insert_many([
        fallback.wait_doc(due, cid, "c0", "whatsapp", confirm, "read", NOW),
        fallback.wait_doc(later, cid, "c1", "whatsapp", confirm, "read",
                          NOW + timedelta(minutes=5))])
    await fallback.failed(db, "whatsapp", [])  # (nothing to do: no command)
    batch = await fallback.move_due(db, cid, NOW + timedelta(seconds=61))
    assert batch is not None
    stored = await db.batches.find_one({"_id": batch})
    assert stored["customer_ids"] == ["c0"] and stored["status"] == "pending"
    moved = await db.deliveries.find_one({"_id": due})
    assert (moved["status"], moved["attempts"]) == ("pending", 0)
    [tried] = moved["tried"]
    assert (tried["channel"], tried["why"], tried["sent_at"]) == (
        "whatsapp", "not read in time", NOW)
    assert "wa_message_id" not in moved and "awaits" not in moved and "channel" not in moved
    assert (await db.deliveries.find_one({"_id": later}))["status"] == "sent"
    assert await fallback.awaiting(db, cid) == 1
    assert (await db.campaigns.find_one({"_id": cid}))["counts"]["sent"] == 1
    assert await fallback.move_due(db, cid, NOW + timedelta(seconds=61)) is None


async def test_a_failed_status_makes_the_wait_due_and_a_read_ends_it(db) -> None:
    cid, [failing, reading] = await _sent(db, 2)
    confirm = fallback.Confirm(3600, "read")
    await db.fallback_waits.insert_many([
        fallback.wait_doc(d, cid, f"c{i}", "whatsapp", confirm, "read", NOW)
        for i, d in enumerate((failing, reading))])
    await statuses.store(db, "whatsapp", [
        statuses.ChannelStatus("wamid.0", "failed", NOW, failing, 131026, "undeliverable"),
        statuses.ChannelStatus("wamid.1", "delivered", NOW, reading),
        statuses.ChannelStatus("wamid.1", "read", NOW, reading)])
    counts = await statuses.apply_waiting(db, "whatsapp")
    assert counts == {"unmatched": 0, "delivered": 1, "undeliverable": 1, "opened": 1}
    assert [w["_id"] async for w in db.fallback_waits.find()] == [failing]
    assert await fallback.move_due(db, cid, NOW) is not None  # due now, not in an hour
    failed = await db.deliveries.find_one({"_id": failing})
    assert failed["tried"][0]["why"] == "failed" and failed["tried"][0]["last_code"] == 131026


async def test_overlapping_status_rounds_count_each_status_once(db) -> None:
    cid, ids = await _sent(db, 40, awaits=None)
    await statuses.store(db, "whatsapp", [
        statuses.ChannelStatus(f"wamid.{i}", kind, NOW, did)
        for i, did in enumerate(ids) for kind in ("delivered", "read")])
    rounds = await asyncio.gather(*(statuses.apply_waiting(db, "whatsapp") for _ in range(4)))
    assert sum(r.get("delivered", 0) for r in rounds) == 40
    assert sum(r.get("opened", 0) for r in rounds) == 40
    campaign = await db.campaigns.find_one({"_id": cid})
    assert (campaign["counts"]["delivered"], campaign["counts"]["opened"]) == (40, 40)
    [rollup] = await db.rollups.find({"campaign_id": cid}).to_list()
    assert rollup["funnel"]["whatsapp"] == {"delivered": 40, "read": 40}
    assert await db.channel_statuses.count_documents({}) == 0


async def test_a_late_status_of_the_channel_a_delivery_left_changes_nothing_on_the_next(
        db) -> None:
    """A WhatsApp `failed` moves the delivery on to SMS; the same status applied again
    (a redelivery, or an overlapping round) must neither mark the SMS message
    undeliverable nor make its wait due."""
    cid, [did] = await _sent(db, 1)
    confirm = fallback.Confirm(60, "read")
    await db.fallback_waits.insert_one(
        fallback.wait_doc(did, cid, "c0", "whatsapp", confirm, "read", NOW))
    failure = statuses.ChannelStatus("wamid.0", "failed", NOW, did, 131026, "undeliverable")
    await statuses.store(db, "whatsapp", [failure])
    assert (await statuses.apply_waiting(db, "whatsapp"))["undeliverable"] == 1
    assert await fallback.move_due(db, cid, NOW) is not None
    # The SMS send is recorded (as its outcome's flush writes it), with its own wait.
    await db.deliveries.update_one({"_id": did}, {"$set": {
        "status": "sent", "channel": "sms", "sent_at": NOW, "awaits": "delivered",
        "smsc_ids": ["smsc-0"]}})
    await db.fallback_waits.insert_one(
        fallback.wait_doc(did, cid, "c0", "sms", confirm, "delivered", NOW))
    await db.channel_statuses.delete_many({})
    await statuses.store(db, "whatsapp", [failure])  # again
    counts = await statuses.apply_waiting(db, "whatsapp")
    assert counts == {"unmatched": 0, "left": 1}
    delivery = await db.deliveries.find_one({"_id": did})
    assert "receipt" not in delivery and delivery["channel"] == "sms"
    wait = await db.fallback_waits.find_one({"_id": did})
    assert wait["channel"] == "sms" and not wait.get("failed")
    assert await fallback.move_due(db, cid, NOW + timedelta(seconds=1)) is None
    assert await db.channel_statuses.count_documents({}) == 0
