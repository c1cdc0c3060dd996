"""The one suppression list against the real wire protocol (no Ray): entries land on
the customers with the address, stay first-reason, lift, apply to new customers, count
soft bounces to a limit, and the channels say which failures are hard bounces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.audience import suppressions
from app.audience.customers import insert_customers, new_customer, set_unsubscribed
from app.audience.suppressions import ALL, Entry
from app.channels.base import SendOutcome
from app.channels.registry import channel_named
from app.core.statuses import AttemptOutcome


async def test_an_entry_marks_the_customers_with_the_address_and_lifts(db) -> None:
    await insert_customers(db, [new_customer("ana@x.example", "Ana", phone="+5511987650005"),
                                new_customer("bia@x.example", "Bia")])
    before = datetime.now(UTC) - timedelta(seconds=1)
    new = await suppressions.suppress(db, [
        Entry("sms", "+5511987650005", suppressions.STOP),
        Entry("email", "bia@x.example", suppressions.HARD_BOUNCE, {"status": "5.1.1"})])
    assert len(new) == 2
    again = await suppressions.suppress(db, [  # listed already: the first reason stays
        Entry("email", "bia@x.example", suppressions.COMPLAINT),
        Entry("email", "ana@x.example", suppressions.OPERATOR)])
    assert [e.key for e in again] == ["email:ana@x.example"]
    assert (await db.suppressions.find_one({"_id": "email:bia@x.example"}))["reason"] == \
        "hard-bounce"
    ana = await db.customers.find_one({"email": "ana@x.example"})
    assert sorted(ana["opted_out"]) == ["email", "sms"]
    changed = await suppressions.consent_changed_since(db, before)
    assert sorted(changed[ana["_id"]]["opted_out"]) == ["email", "sms"]

    lifted = await suppressions.lift(db, "sms", "+5511987650005")
    assert lifted is not None and lifted["reason"] == "stop"
    assert await suppressions.lift(db, "sms", "+5511987650005") is None
    assert (await db.customers.find_one({"_id": ana["_id"]}))["opted_out"] == ["email"]
    page, _ = await suppressions.entries_page(db, "email", 10)
    assert sorted(d["address"] for d in page) == ["ana@x.example", "bia@x.example"]
    exported = await suppressions.export_csv(db, None)
    assert exported.splitlines()[0] == "channel,address,reason,at"
    assert "email,bia@x.example,hard-bounce," in exported and "sms," not in exported


async def test_an_unsubscribe_is_listed_for_all_channels_and_lifting_resubscribes(db) -> None:
    [doc] = [new_customer("cai@x.example", "Cai")]
    await insert_customers(db, [doc])
    assert await set_unsubscribed(db, doc["_id"], via="link")
    entry = await db.suppressions.find_one({"_id": "all:cai@x.example"})
    assert (entry["reason"], entry["detail"]) == ("unsubscribe", {"via": "link"})
    await suppressions.lift(db, ALL, "cai@x.example")
    assert (await db.customers.find_one({"_id": doc["_id"]}))["unsubscribed"] is False


async def test_new_customers_get_the_list_applied_as_they_are_imported(db) -> None:
    await suppressions.suppress(db, [
        Entry("email", "dan@x.example", suppressions.COMPLAINT),
        Entry("sms", "+5511987650006", suppressions.STOP),
        Entry(ALL, "eva@x.example", suppressions.UNSUBSCRIBE)])
    docs = [new_customer("dan@x.example", "Dan"),
            new_customer("eva@x.example", "Eva"),
            new_customer("fia@x.example", "Fia", phone="+5511987650006"),
            new_customer("gil@x.example", "Gil")]
    inserted, _ = await insert_customers(db, docs)
    assert inserted == 4
    stored = {d["email"]: d async for d in db.customers.find({})}
    assert stored["dan@x.example"]["opted_out"] == ["email"]
    assert stored["eva@x.example"]["unsubscribed"] is True
    assert stored["fia@x.example"]["opted_out"] == ["sms"]
    assert "opted_out" not in stored["gil@x.example"]
    assert stored["gil@x.example"]["unsubscribed"] is False


async def test_the_export_shows_a_formula_looking_address_as_text(db) -> None:
    """"=cmd|..."@x.example is a valid address; opened in a spreadsheet, the export must
    not run it (OWASP CSV injection)."""
    address = "=hyperlink(evil)@x.example"
    await suppressions.suppress(db, [Entry("email", address, suppressions.OPERATOR)])
    exported = await suppressions.export_csv(db, "email")
    assert f"email,'{address}," in exported and f",{address}," not in exported


async def test_soft_bounces_count_to_the_limit(db) -> None:
    entry = Entry("email", "hal@x.example", suppressions.SOFT_BOUNCES)
    assert await suppressions.count_soft_bounces(db, [entry], limit=3) == []
    assert await suppressions.count_soft_bounces(db, [entry], limit=3) == []
    [reached] = await suppressions.count_soft_bounces(db, [entry], limit=3)
    assert reached.key == "email:hal@x.example" and reached.detail["limit"] == 3


def test_the_channels_say_which_failures_are_hard_bounces() -> None:
    email, sms = channel_named("email"), channel_named("sms")
    failed = AttemptOutcome.FAILED
    assert email.hard_bounce(SendOutcome(failed, 550, "5.1.1 User unknown")) == "5.1.1"
    assert email.hard_bounce(SendOutcome(failed, 550, "5.2.1 Mailbox disabled")) == "5.2.1"
    assert email.hard_bounce(SendOutcome(failed, 554, "5.7.1 Rejected as spam")) is None
    assert email.hard_bounce(SendOutcome(failed, 550, "Mailbox unavailable")) is None
    assert email.hard_bounce(SendOutcome(AttemptOutcome.RETRY, 450, "4.1.1 try later")) is None
    assert sms.hard_bounce(SendOutcome(failed, 0x0B, "ESME_RINVDSTADR")) == "ESME_RINVDSTADR"
    assert sms.hard_bounce(SendOutcome(failed, 0x45, "ESME_RSUBMITFAIL")) is None
    assert email.address_of({"email": "Ana@X.example"}) == "ana@x.example"
    assert sms.address_of({"phone": "+5511987650005"}) == "+5511987650005"
