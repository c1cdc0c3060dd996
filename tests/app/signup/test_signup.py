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
