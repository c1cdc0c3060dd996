"""The data migrations against the real wire protocol (no Ray): each changes what a
database from an earlier version holds, and runs once per database, recorded."""

from __future__ import annotations

from app import migrations
from app.audience.customers import SHARDS, bucket_of
from app.audience.models import Audience
from app.campaigns import records as campaigns
from app.campaigns.models import CampaignCreate
from app.core.config import Settings
from app.signup import store as signup
from app.signup.inbound_mail import SIGNUP, Inbound

SETTINGS = Settings(imap_host="imap.example", imap_user="signup", imap_password="pw-secret")


async def test_pending_migrations_run_once_and_are_recorded(db) -> None:
    await db.customers.insert_one({"_id": "old-customer", "email": "old@x.example"})
    first = await migrations.run_pending(db)
    assert list(first) == [name for name, _ in migrations.MIGRATIONS]
    assert first["customers-bucketed"] == 1
    stored = await db.customers.find_one({"_id": "old-customer"})
    assert stored["bucket"] == bucket_of("old-customer")
    assert stored["shard"] == bucket_of("old-customer") % SHARDS
    assert stored["unsubscribed"] is False
    recorded = {doc["_id"] async for doc in db.migrations.find()}
    assert recorded == set(first)
    # A second start-up finds them recorded: nothing runs, nothing changes.
    await db.customers.insert_one({"_id": "later", "email": "later@x.example"})
    assert await migrations.run_pending(db) == {}
    assert "bucket" not in await db.customers.find_one({"_id": "later"})


async def test_launch_options_stored_under_the_old_name_move_to_launch(db) -> None:
    doc = await campaigns.create_campaign(db, CampaignCreate(
        name="spring", subject="Hi", body_text="Plan {{ plan }}",
        audience=Audience(tag="t")), created_by="test")
    await db.campaigns.update_one({"_id": doc["_id"]},
                                  {"$set": {"settings": {"connections": 5, "workers": 2}}})
    assert await migrations.rename_launch_options(db) == 1
    stored = await db.campaigns.find_one({"_id": doc["_id"]})
    assert "settings" not in stored and stored["launch"] == {"connections": 5, "workers": 2}
    assert (await campaigns.get_campaign(db, doc["_id"]))["launch"]["connections"] == 5


async def test_signup_records_handled_before_the_counters_are_counted_once(db) -> None:
    account = signup.account_key(SETTINGS)
    record = await signup.begin(db, account, 7, 5, 100, Inbound(
        kind=SIGNUP, reason="test", sender="p5@x.example"))
    await signup.handled(db, record["_id"], SIGNUP, "test", {"campaign_id": "autumn"},
                         "Processed")
    key = signup.counts_key(account)
    # As a database from before the counters holds it: no counter, no flag.
    await db.counters.delete_one({"_id": key})
    await db.inbound_mail.update_one({"_id": record["_id"]}, {"$unset": {"counted": 1}})

    assert await migrations.count_earlier_signup_records(db) == 1
    assert await migrations.count_earlier_signup_records(db) == 0  # counted: not again
    stored = await db.counters.find_one({"_id": key})
    assert stored["kinds"] == {SIGNUP: 1} and stored["signups_by_campaign"] == {"autumn": 1}
    assert (await db.inbound_mail.find_one({"_id": record["_id"]}))["state"] == signup.HANDLED
