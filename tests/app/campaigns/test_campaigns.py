"""The campaign domain against the real MongoDB wire protocol, without Ray: status
changes, batch claims and leases, outcomes recorded once, bounces, standing campaigns."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from pydantic import ValidationError

from app.audience.models import Audience
from app.campaigns import batches, ledger, rounds
from app.campaigns import records as campaigns
from app.campaigns.batch import BatchClose
from app.campaigns.models import CampaignCreate, LaunchOptions
from app.core import rollup_repair, rollups
from app.core.ids import delivery_id
from app.core.statuses import BatchStatus, CampaignStatus, DeliveryStatus


async def _campaign(db) -> dict:
    return await campaigns.create_campaign(db, CampaignCreate(
        name="spring", subject="Hi", body_text="Plan {{ plan }}",
        audience=Audience(tag="t")), created_by="test")


async def test_a_campaign_launches_once_and_changes_status_only_from_where_allowed(db) -> None:
    doc = await _campaign(db)
    assert doc["status"] == CampaignStatus.DRAFT
    launched = await campaigns.launch_campaign(db, doc["_id"], LaunchOptions(),
                                               connections=3, audience_pages=2)
    assert launched["status"] == "running" and launched["launch"]["connections"] == 3
    assert await campaigns.launch_campaign(db, doc["_id"], LaunchOptions(), 3, 2) is None
    assert not await campaigns.change_status(db, doc["_id"], (CampaignStatus.PAUSED,),
                                             CampaignStatus.RUNNING)
    assert await campaigns.change_status(db, doc["_id"], (CampaignStatus.RUNNING,),
                                         CampaignStatus.PAUSED)
    assert await campaigns.campaign_status(db, doc["_id"]) == "paused"
    assert await campaigns.fail_campaign(db, doc["_id"], "bad login")
    assert (await campaigns.get_campaign(db, doc["_id"]))["failure_reason"] == "bad login"


async def test_leases_end_by_the_database_clock(db) -> None:
    doc = await _campaign(db)
    before = await batches.database_now(db)
    batch = await batches.insert_claimed_batch(db, doc["_id"], 0, ["a"], [0, "a"], "k1",
                                                 lease_s=30)
    ends = (await db.batches.find_one({"_id": batch}))["not_before"]
    assert before + timedelta(seconds=30) <= ends <= await batches.database_now(db) + \
        timedelta(seconds=30)
    await rounds.record_round(db, doc["_id"], {}, None,
                              [BatchClose(batch, "k1", ["a"], attempt=1, backoff_s=60)])
    due = (await db.batches.find_one({"_id": batch}))["not_before"]
    assert due >= ends + timedelta(seconds=30)  # the backoff, from the database's now


async def test_a_claim_is_held_by_one_run_and_given_back_when_its_lease_runs_out(db) -> None:
    doc = await _campaign(db)
    batch = await batches.insert_claimed_batch(db, doc["_id"], 0, ["a", "b"], [0, "b"],
                                                 "k1", lease_s=30)
    assert await batches.insert_claimed_batch(db, doc["_id"], 0, ["a"], [0, "a"], "k9",
                                                30) is None  # made before a restart
    assert await batches.renew_lease(db, batch, "k1", 30, {"worker": "w"})
    assert not await batches.renew_lease(db, batch, "other", 30, {"worker": "x"})
    assert (await db.batches.find_one({"_id": batch}))["worker"] == {"worker": "w"}
    # Half sent: the rest waits for attempt 1; only the claim holder could say so.
    await rounds.record_round(db, doc["_id"], {}, None, [BatchClose(batch, "other", [], 1)])
    assert (await db.batches.find_one({"_id": batch}))["status"] == BatchStatus.CLAIMED
    await rounds.record_round(db, doc["_id"], {}, None, [BatchClose(batch, "k1", ["b"], 1)])
    found = await batches.claim_batch(db, batch, "k2", lease_s=0.05)
    assert found["customer_ids"] == ["b"] and found["attempt"] == 1
    assert await batches.claim_batch(db, batch, "k3", lease_s=30) is None  # held
    await asyncio.sleep(0.1)
    assert await batches.requeue_expired(db, doc["_id"], keep={batch}) == []
    assert await batches.requeue_expired(db, doc["_id"]) == [batch]
    assert not await batches.renew_lease(db, batch, "k2", 30)  # that run must stop
    assert [b["status"] for b in await batches.open_batches(db, doc["_id"])] == [
        BatchStatus.PENDING]
    assert await batches.unfinished_batches(db, doc["_id"]) == 1


async def test_an_outcome_is_recorded_once_however_many_runs_send_it(db) -> None:
    cid = (await _campaign(db))["_id"]
    first = {"_id": delivery_id(cid, "a"), "campaign_id": cid, "customer_id": "a",
             "status": DeliveryStatus.PENDING, "attempts": 1}
    assert await ledger.write_outcomes(db, [first], []) == set()
    again = {**first, "status": DeliveryStatus.SENT}
    lost = await ledger.write_outcomes(db, [again], [])  # a second run's first attempt
    assert lost == {first["_id"]}
    await ledger.write_outcomes(db, [], [(first["_id"], {"status": "sent", "attempts": 2})])
    recorded = await ledger.recorded(db, [first["_id"], delivery_id(cid, "z")])
    assert {k: (v["status"], v["attempts"]) for k, v in recorded.items()} == {
        first["_id"]: ("sent", 2)}


async def test_a_bounce_moves_its_delivery_counters_and_roll_ups_once(db) -> None:
    cid = (await _campaign(db))["_id"]
    at = batches.now()
    sent = {"_id": delivery_id(cid, "a"), "campaign_id": cid, "customer_id": "a",
            "status": "sent", "attempts": 1, "created_at": at, "last_attempt_at": at,
            "sent_at": at, "latency_ms": 12.0, "node": "n", "worker": "w", "last_code": 250}
    await ledger.write_outcomes(db, [sent], [])
    await ledger.record_progress(db, cid, {"counts.sent": 1}, None)
    increments = rollups.Increments()
    increments.outcome(cid, sent, None)
    await rollups.write(db, increments)

    bounce = {"last_code": 550, "last_error": "no such user"}
    assert await campaigns.record_bounce(db, sent, bounce)
    assert not await campaigns.record_bounce(db, sent, bounce)  # the same bounce again
    campaign = await campaigns.get_campaign(db, cid)
    assert (campaign["counts"]["sent"], campaign["counts"]["failed"]) == (0, 1)
    drift = await rollup_repair.reconcile_campaign(db, cid, increments_of(
        await db.deliveries.find({"campaign_id": cid}).to_list()))
    assert drift["drifted"] == 0, drift


def increments_of(deliveries: list[dict]) -> rollups.Increments:
    increments = rollups.Increments()
    for doc in deliveries:
        increments.outcome(doc["campaign_id"], doc, None)
    return increments


async def test_a_standing_campaign_takes_each_recipient_once_and_reopens(db) -> None:
    spec = {"name": "confirmations", "kind": "transactional", "tag": "c",
            "templates": {"subject": "Hi", "body_text": "Welcome", "body_html": None},
            "options": {"workers": 1, "batch_size": 50, "connections": 1},
            "created_by": "test"}
    await campaigns.ensure_standing_campaign(db, "standing", **spec)
    await campaigns.ensure_standing_campaign(db, "standing", **spec)  # idempotent
    assert not await campaigns.reopen_standing_campaign(db, "standing")  # nothing to send
    assert await campaigns.add_recipient(db, "standing", "c:a", "a")
    assert not await campaigns.add_recipient(db, "standing", "c:a", "a")
    campaign = await campaigns.get_campaign(db, "standing")
    assert campaign["status"] == "completed" and campaign["counts"]["total"] == 1
    assert await campaigns.reopen_standing_campaign(db, "standing")
    assert await campaigns.campaign_status(db, "standing") == "running"


def test_a_fallback_rule_names_each_channel_once_and_the_templates_fit_all() -> None:
    audience = Audience(tag="t")
    rule = CampaignCreate(name="r", channel="telegram", fallback=["sms", "email"],
                          subject="Hi", body_text="Hello", body_html="<p>Hello</p>",
                          audience=audience)
    assert rule.fallback == ["sms", "email"]  # HTML for the email that may carry it
    for bad, field in (({"fallback": ["telegram"]}, "fallback"),
                       ({"fallback": ["sms", "sms"]}, "fallback"),
                       ({"fallback": ["email"], "subject": ""}, "subject"),
                       ({"fallback": ["sms"], "body_html": "<p>x</p>"}, "body_html")):
        with pytest.raises(ValidationError) as refused:
            CampaignCreate.model_validate({"name": "r", "channel": "telegram",
                                           "body_text": "Hello", "subject": "Hi",
                                           "audience": {"tag": "t"}, **bad})
        assert [e["loc"][0] for e in refused.value.errors()] == [field], bad
    with pytest.raises(ValidationError, match="customers_choice needs a fallback"):
        CampaignCreate(name="r", channel="sms", body_text="Hello", audience=audience,
                       customers_choice=True)
