"""Email signup in MongoDB: the watcher's place in the mailbox, what each message did,
and the effects (customer created or unsubscribed, delivery failed, confirmation queued).

Neither missing nor repeating a message rests on three things:
- the mailbox's UIDVALIDITY and the last UID handled are kept in `imap_state`; a new
  UIDVALIDITY starts the count again (the mailbox only holds unhandled mail, since
  each message is moved out once handled);
- each message gets a record in `inbound_mail` keyed by (account, UIDVALIDITY, UID)
  before anything is done, so a message seen again after a crash is recognised and
  only moved, and `runs` counts how often its handling began;
- every effect is idempotent: customers are keyed by email, the confirmation is the
  batch and delivery `signup-confirmations:<customer>`, a bounce fails only a `sent` delivery.

A new customer from a signup is `pending` (`unsubscribed: "pending"`): no campaign's
audience matches it until the signed link in its confirmation is followed
(`/signup/confirm/...`, `app.audience.customers.confirm_signup`), since anyone can put anyone's
address in a From header.

Confirmations go through the normal send path: one-recipient batches of a standing
campaign, `signup-confirmations`, sent by its runner and send tasks; the watcher
reopens it and pokes its runner when a new confirmation is queued.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app.audience import suppressions
from app.audience.customers import PENDING, new_customer, set_unsubscribed
from app.campaigns import records as campaigns
from app.campaigns.batches import now
from app.channels.email.channel import dead_mailbox
from app.channels.email.mailer import delivery_id_in
from app.core.config import Settings
from app.core.ids import delivery_id
from app.core.paging import newest_first
from app.core.rollups import key_safe
from app.signup.inbound_mail import (
    BOUNCE,
    COMPLAINT,
    DSN_FAILED,
    REVIEW,
    SIGNUP,
    UNSUBSCRIBE,
    Inbound,
)

CONFIRMATIONS = "signup-confirmations"
SIGNUP_TAG = "email-signup"
HANDLED, MOVED = "handled", "moved"


def account_key(settings: Settings) -> str:
    """Names the mailbox (never the password)."""
    return (f"{settings.imap_user}@{settings.imap_host}:{settings.imap_port}/"
            f"{settings.imap_mailbox}")


# Where the watcher is in the mailbox -----------------------------------------------------


async def position(db: AsyncDatabase, account: str, uidvalidity: int) -> int:
    """The last UID handled under this UIDVALIDITY (0 after the mailbox was rebuilt)."""
    state = await db.imap_state.find_one({"_id": account})
    if state is not None and state.get("uidvalidity") == uidvalidity:
        return int(state.get("last_uid", 0))
    await db.imap_state.update_one(
        {"_id": account},
        {"$set": {"uidvalidity": uidvalidity, "last_uid": 0, "validity_changed_at": now()}},
        upsert=True)
    return 0


async def advance(db: AsyncDatabase, account: str, uidvalidity: int, uid: int) -> None:
    await db.imap_state.update_one(
        {"_id": account, "uidvalidity": uidvalidity, "last_uid": {"$lt": uid}},
        {"$set": {"last_uid": uid}})


async def note_poll(db: AsyncDatabase, account: str, error: str | None) -> None:
    fields: dict[str, Any] = {"last_poll_at": now(), "last_error": error}
    if error is None:
        fields["last_ok_at"] = now()
    await db.imap_state.update_one({"_id": account}, {"$set": fields}, upsert=True)


# One record per message ----------------------------------------------------------------


def record_id(account: str, uidvalidity: int, uid: int) -> str:
    return f"{account}|{uidvalidity}|{uid}"


async def begin(db: AsyncDatabase, account: str, uidvalidity: int, uid: int, size: int | None,
                inbound: Inbound) -> dict:
    """The message's record, created on first sight; `runs` counts handling attempts."""
    rid = record_id(account, uidvalidity, uid)
    await db.inbound_mail.update_one(
        {"_id": rid},
        {"$setOnInsert": {"account": account, "uidvalidity": uidvalidity, "uid": uid,
                          "size": size, "received_at": now(), "state": "new",
                          **inbound.to_doc()},
         "$inc": {"runs": 1}},
        upsert=True)
    record = await db.inbound_mail.find_one({"_id": rid})
    assert record is not None  # (just upserted)
    return record


def counts_key(account: str) -> str:
    return f"inbound|{account}"


async def handled(db: AsyncDatabase, rid: str, kind: str, reason: str, outcome: dict,
                  folder: str) -> None:
    """Record how the message was handled; the first time, count it too (a message
    handled again after a crash is counted once: the `counted` flag is set by the same
    write that wins)."""
    fields = {"state": HANDLED, "kind": kind, "reason": reason, "outcome": outcome,
              "folder": folder, "handled_at": now(),
              "campaign_id": outcome.get("campaign_id"),
              "customer_id": outcome.get("customer_id")}
    if not await count_once(db, rid, fields):  # counted by an earlier run
        await db.inbound_mail.update_one({"_id": rid}, {"$set": fields})


async def count_once(db: AsyncDatabase, rid: str, fields: dict[str, Any]) -> bool:
    """Set `fields` and add the record to its account's counters, unless it was counted
    already (then nothing is written: False)."""
    first = await db.inbound_mail.find_one_and_update(
        {"_id": rid, "counted": {"$ne": True}}, {"$set": {**fields, "counted": True}},
        {"account": 1})
    if first is None:
        return False
    kind, campaign_id = fields.get("kind") or REVIEW, fields.get("campaign_id")
    inc = {f"kinds.{kind}": 1}
    if kind == SIGNUP and campaign_id:
        inc[f"signups_by_campaign.{key_safe(campaign_id)}"] = 1
    await db.counters.update_one({"_id": counts_key(first["account"])}, {"$inc": inc},
                                 upsert=True)
    return True


async def moved(db: AsyncDatabase, rid: str) -> None:
    await db.inbound_mail.update_one({"_id": rid}, {"$set": {"state": MOVED,
                                                             "moved_at": now()}})


# Effects ---------------------------------------------------------------------------------


async def apply(db: AsyncDatabase, settings: Settings, inbound: Inbound,
                confirm_url: Callable[[str], str]) -> tuple[str, str, dict[str, Any]]:
    """Do what the message asks; return (kind, reason, outcome). Safe to run again.
    `confirm_url`: a customer's signed signup confirmation link."""
    if inbound.kind == SIGNUP:
        return await _signup(db, settings, inbound, confirm_url)
    if inbound.kind == UNSUBSCRIBE:
        return await _unsubscribe(db, inbound)
    if inbound.kind == BOUNCE:
        return await _bounce(db, inbound)
    if inbound.kind == COMPLAINT:
        return await _complaint(db, inbound)
    return REVIEW, inbound.reason, {"action": "review"}


async def delivery_sent_as(db: AsyncDatabase, message_id: str) -> dict | None:
    """The delivery that went out with this Message-ID (it carries the delivery's id)."""
    delivery_id = delivery_id_in(message_id)
    if delivery_id is None:
        return None
    delivery = await db.deliveries.find_one({"_id": delivery_id})
    return delivery if delivery and delivery.get("message_id") == message_id else None


async def campaign_of(db: AsyncDatabase, references: list[str]) -> str | None:
    """The campaign whose message this replies to (newest reference first)."""
    for ref in reversed(references[-10:]):
        delivery = await delivery_sent_as(db, ref)
        if delivery is not None:
            return delivery["campaign_id"]
    return None


async def _signup(db: AsyncDatabase, settings: Settings, inbound: Inbound,
                  confirm_url: Callable[[str], str]) -> tuple[str, str, dict[str, Any]]:
    assert inbound.sender is not None
    campaign_id = await campaign_of(db, inbound.references)
    signup = {"at": now(), "campaign_id": campaign_id, "message_id": inbound.message_id,
              "keyword": inbound.keyword}
    customer = await db.customers.find_one({"email": inbound.sender})
    if customer is not None and customer.get("unsubscribed") is True:
        # Consent was withdrawn before; a person decides whether this reply restores it.
        return REVIEW, "an unsubscribed customer asked to sign up", {
            "action": "review", "customer_id": customer["_id"], "campaign_id": campaign_id}
    created = False
    if customer is None:
        doc = new_customer(inbound.sender, inbound.name or inbound.sender.split("@")[0],
                           is_client=False, tags=[SIGNUP_TAG])
        # A From header proves nothing: no campaign reaches the address until the link
        # in its confirmation is followed (double opt-in).
        doc.update(source="email-signup", signup=signup, unsubscribed=PENDING,
                   vars={"confirm_url": confirm_url(doc["_id"])})
        try:
            await db.customers.insert_one(doc)
            customer, created = doc, True
        except DuplicateKeyError:  # created meanwhile (or by an earlier run)
            customer = await db.customers.find_one({"email": inbound.sender})
    assert customer is not None  # (found, made, or made meanwhile)
    if not created:
        fields: dict[str, Any] = {"signup": signup}
        if inbound.name:
            fields["name"] = inbound.name
        await db.customers.update_one({"_id": customer["_id"]},
                                      {"$set": fields, "$addToSet": {"tags": SIGNUP_TAG}})
    queued = await queue_confirmation(db, settings, customer["_id"])
    return SIGNUP, inbound.reason, {
        "action": "customer_created" if created else "customer_updated",
        "customer_id": customer["_id"], "campaign_id": campaign_id,
        "confirmation": delivery_id(CONFIRMATIONS, customer["_id"]),
        "confirmation_queued": queued}


async def _unsubscribe(db: AsyncDatabase, inbound: Inbound) -> tuple[str, str, dict[str, Any]]:
    customer = await db.customers.find_one({"email": inbound.sender}, {"_id": 1})
    if customer is None:
        return UNSUBSCRIBE, inbound.reason, {"action": "unknown_sender"}
    await set_unsubscribed(db, customer["_id"], via="reply")  # its event: the outbox sweep
    campaign_id = await campaign_of(db, inbound.references)
    return UNSUBSCRIBE, inbound.reason, {"action": "unsubscribed",
                                         "customer_id": customer["_id"],
                                         "campaign_id": campaign_id}


async def _bounce(db: AsyncDatabase, inbound: Inbound) -> tuple[str, str, dict[str, Any]]:
    bounce = inbound.bounce
    assert bounce is not None
    if bounce.action != DSN_FAILED:
        return BOUNCE, inbound.reason, {"action": "ignored"}  # delayed, relayed: no change
    if not bounce.original_message_id:
        return REVIEW, "bounce without the original Message-ID", {"action": "review"}
    delivery = await delivery_sent_as(db, bounce.original_message_id)
    if delivery is None:
        return REVIEW, "bounce for a message we did not send", {"action": "review"}
    customer = await db.customers.find_one({"_id": delivery["customer_id"]}, {"email": 1})
    if bounce.recipient and customer and bounce.recipient.lower() != customer["email"]:
        return REVIEW, "bounce recipient does not match the delivery", {
            "action": "review", "campaign_id": delivery["campaign_id"]}
    outcome = {"campaign_id": delivery["campaign_id"], "customer_id": delivery["customer_id"],
               "delivery_id": delivery["_id"]}
    reason = bounce.diagnostic or f"bounced: {bounce.status or DSN_FAILED}"
    bounced = {"last_code": bounce.smtp_code, "last_error": reason, "bounced_at": now(),
               "bounce": {"status": bounce.status, "recipient": bounce.recipient}}
    address = (customer or {}).get("email")
    dead = dead_mailbox(bounce.status) and address is not None
    if dead and address:  # the address is gone: on the suppression list
        await suppressions.suppress(db, [suppressions.Entry(
            "email", address, suppressions.HARD_BOUNCE,
            {"status": bounce.status, "campaign_id": delivery["campaign_id"], "via": "dsn"})])
    if await campaigns.record_bounce(db, delivery, bounced):
        return BOUNCE, inbound.reason, {"action": "delivery_failed", **outcome,
                                        "suppressed": bool(dead)}
    return BOUNCE, inbound.reason, {"action": f"delivery already {delivery['status']}",
                                    **outcome}


async def _complaint(db: AsyncDatabase, inbound: Inbound) -> tuple[str, str, dict[str, Any]]:
    """A recipient marked our message as spam: their address gets no more email."""
    complaint = inbound.complaint
    assert complaint is not None
    # Only a report about a message we sent counts: anyone can mail a report naming
    # any address, and one that names none of ours goes to a person.
    delivery = (await delivery_sent_as(db, complaint.original_message_id)
                if complaint.original_message_id else None)
    customer = await db.customers.find_one({"_id": delivery["customer_id"]},
                                           {"email": 1}) if delivery else None
    if delivery is None or customer is None or not customer.get("email"):
        return REVIEW, "complaint about a message we did not send", {"action": "review"}
    campaign_id = delivery["campaign_id"]
    await suppressions.suppress(db, [suppressions.Entry(
        "email", customer["email"], suppressions.COMPLAINT,
        {"feedback_type": complaint.feedback_type, "campaign_id": campaign_id})])
    return COMPLAINT, inbound.reason, {"action": "suppressed", "customer_id": customer["_id"],
                                       "campaign_id": campaign_id}


# Confirmations: one standing campaign, sent by its runner ---------------------------------


async def queue_confirmation(db: AsyncDatabase, settings: Settings, customer_id: str) -> bool:
    """A pending confirmation delivery for this customer (at most one ever); True if new."""
    await campaigns.ensure_standing_campaign(
        db, CONFIRMATIONS, name="Signup confirmations", kind="transactional",
        tag="signup-confirmation",
        templates={"subject": settings.signup_confirmation_subject,
                   "body_text": settings.signup_confirmation_text, "body_html": None},
        options={"workers": 1, "batch_size": 50, "rate_limit_per_s": None, "connections": 1},
        created_by="signup-watcher")
    return await campaigns.add_recipient(db, CONFIRMATIONS, f"c:{customer_id}", customer_id)


async def confirmations_to_send(db: AsyncDatabase) -> bool:
    """Reopen the confirmations campaign if it holds unsent batches; True when its
    runner should be running (and be poked to pick them up). A runner that completed
    it while a confirmation was being queued is caught here on the next poll."""
    return await campaigns.reopen_standing_campaign(db, CONFIRMATIONS)


# The API's picture -------------------------------------------------------------------------

RECORD_FIELDS = {"_id": 0, "uid": 1, "kind": 1, "reason": 1, "sender": 1, "name": 1,
                 "subject": 1, "message_id": 1, "snippet": 1, "attachments": 1, "folder": 1,
                 "state": 1, "received_at": 1, "campaign_id": 1, "customer_id": 1,
                 "outcome": 1, "size": 1, "runs": 1, "keyword": 1}


async def overview(db: AsyncDatabase, settings: Settings, limit: int = 20) -> dict[str, Any]:
    if not settings.signup_enabled:
        return {"configured": False, "account": None, "state": None, "counts": {},
                "by_campaign": [], "recent": [], "review_queue": []}
    account = account_key(settings)
    state = await db.imap_state.find_one({"_id": account}, {"_id": 0}) or {}
    # Counted as messages are handled (`handled`): this panel is polled, and a count
    # over the mailbox's records would read every one of them each time.
    stored = await db.counters.find_one({"_id": counts_key(account)}) or {}
    counts = stored.get("kinds", {})
    by_campaign = sorted(({"campaign_id": cid, "signups": n}
                          for cid, n in stored.get("signups_by_campaign", {}).items()),
                         key=lambda row: -row["signups"])
    fields = {**RECORD_FIELDS, "_id": 1}  # paging orders by (received_at, _id)
    recent, _ = await newest_first(db.inbound_mail, {"account": account}, "received_at",
                                   limit, projection=fields)
    review, _ = await newest_first(db.inbound_mail, {"account": account, "kind": REVIEW},
                                   "received_at", 50, projection=fields)
    for record in (*recent, *review):
        record.pop("_id")
    return {"configured": True, "account": account, "state": state,
            "counts": {kind: counts.get(kind, 0) for kind in (SIGNUP, UNSUBSCRIBE, BOUNCE,
                                                              REVIEW)},
            "by_campaign": by_campaign, "recent": recent, "review_queue": review}
