"""The signup mailbox's records and counters against the real wire protocol (no Ray):
each message counted once by kind (and signups by campaign), whatever is retried, and
the panel reads the counters instead of counting the records."""

from __future__ import annotations

from app.core.config import Settings
from app.signup import store as signup
from app.signup.inbound_mail import REVIEW, SIGNUP, UNSUBSCRIBE, Inbound

SETTINGS = Settings(imap_host="imap.example", imap_user="signup", imap_password="pw-secret")


async def _message(db, uid: int, kind: str, **outcome) -> str:
    account = signup.account_key(SETTINGS)
    record = await signup.begin(db, account, 7, uid, 100, Inbound(kind=kind, reason="test",
                                                                   sender=f"p{uid}@x.example"))
    await signup.handled(db, record["_id"], kind, "test", outcome, "Processed")
    return record["_id"]


async def test_each_message_is_counted_once_by_kind_even_when_handled_again(db) -> None:
    rid = await _message(db, 1, SIGNUP, campaign_id="spring")
    await signup.handled(db, rid, SIGNUP, "again", {"campaign_id": "spring"}, "Processed")
    await signup.moved(db, rid)
    await _message(db, 2, SIGNUP, campaign_id="spring")
    await _message(db, 3, UNSUBSCRIBE)
    await _message(db, 4, REVIEW)

    view = await signup.overview(db, SETTINGS, limit=2)
    assert view["counts"] == {SIGNUP: 2, UNSUBSCRIBE: 1, "bounce": 0, REVIEW: 1}
    assert view["by_campaign"] == [{"campaign_id": "spring", "signups": 2}]
    assert [r["uid"] for r in view["recent"]] == [4, 3]  # newest first, a bounded page
    assert [r["uid"] for r in view["review_queue"]] == [4]
    assert "_id" not in view["recent"][0] and "pw-secret" not in str(view)


async def test_records_handled_before_the_counters_are_counted_once_at_start_up(db) -> None:
    rid = await _message(db, 5, SIGNUP, campaign_id="autumn")
    key = signup.counts_key(signup.account_key(SETTINGS))
    # As a database from before the counters holds it: no counter, no flag.
    await db.counters.delete_one({"_id": key})
    await db.inbound_mail.update_one({"_id": rid}, {"$unset": {"counted": 1}})
    await db.meta.delete_one({"_id": signup.COUNTED["_id"]})

    assert await signup.count_earlier_records(db) == 1
    assert await signup.count_earlier_records(db) == 0  # once per database
    stored = await db.counters.find_one({"_id": key})
    assert stored["kinds"] == {SIGNUP: 1} and stored["signups_by_campaign"] == {"autumn": 1}
    assert (await db.inbound_mail.find_one({"_id": rid}))["state"] == signup.HANDLED
