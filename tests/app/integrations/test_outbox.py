"""Events written with the change they report (app.integrations.outbox), against the real MongoDB
wire protocol, no Ray: a writer that stops after the change loses no event."""

from __future__ import annotations

from app.audience.customers import set_unsubscribed
from app.audience.models import Audience
from app.campaigns import records as campaigns
from app.campaigns.models import CampaignCreate, LaunchOptions
from app.core.statuses import CampaignStatus
from app.integrations import outbox, webhooks


async def _endpoint(db, *events: str) -> str:
    doc = await webhooks.create_endpoint(db, url="https://crm.example/hook", events=list(events),
                                         description=None, ordered=False, max_in_flight=4,
                                         created_by="test")
    webhooks.subscriptions.forget()
    return doc["_id"]


async def test_an_unsubscribe_whose_writer_stopped_is_reported_by_the_sweep(db) -> None:
    endpoint = await _endpoint(db, "customer.unsubscribed")
    await db.customers.insert_one({"_id": "k1", "email": "k1@out.example"})
    assert await set_unsubscribed(db, "k1", via="link")
    # The writer stopped here: the change is stored, and its event with it.
    assert (await db.customers.find_one({"_id": "k1"}))["unsubscribed"] is True
    assert await db.webhook_messages.count_documents({}) == 0

    assert await outbox.sweep(db, older_than_s=0) == 1
    [message] = await db.webhook_messages.find().to_list()
    assert (message["endpoint_id"], message["type"], message["data"]) == (
        endpoint, "customer.unsubscribed", {"customer_id": "k1", "via": "link"})
    assert not (await db.customers.find_one({"_id": "k1"})).get("outbox")
    assert await outbox.sweep(db, older_than_s=0) == 0
    # Unsubscribing again changes nothing and reports nothing.
    assert await set_unsubscribed(db, "k1", via="reply")
    assert not (await db.customers.find_one({"_id": "k1"})).get("outbox")
    assert not await set_unsubscribed(db, "nobody", via="link")


async def test_an_event_handed_on_twice_is_stored_once(db) -> None:
    await _endpoint(db, "campaign.completed")
    doc = await campaigns.create_campaign(db, CampaignCreate(
        name="c", subject="s", body_text="t", audience=Audience(tag="x")), created_by="t")
    await campaigns.launch_campaign(db, doc["_id"], LaunchOptions(), connections=1,
                                    audience_pages=1)
    event = outbox.entry("campaign.completed", {"campaign_id": doc["_id"]},
                         key=f"campaign.completed:{doc['_id']}")
    assert await campaigns.change_status(db, doc["_id"], (CampaignStatus.RUNNING,),
                                         CampaignStatus.COMPLETED, event=event)
    pending = (await campaigns.get_campaign(db, doc["_id"]))["outbox"]
    assert await outbox.hand_on(db, "campaigns", doc["_id"], pending) == 1
    assert await outbox.hand_on(db, "campaigns", doc["_id"], pending) == 0  # a retry
    assert await db.webhook_messages.count_documents({"type": "campaign.completed"}) == 1
