"""Reactive marketing in MongoDB: counter-offers, their firing, acceptance.

The counter-offer journey (`app.marketing.journey`) decides when: its offer step stores
an offer keyed by that step's send (`offer_id_of`), so a step made again after a kill
makes no second one, and the marketing actor fires it. Offers due together fire as a
batch, a few commands for the whole batch: one bulk write moves them `scheduled` ->
`firing` under a claim token (a conditional update each: two actors, or a restarted one,
cannot both take one), one insert writes the counter-offers into the customers' inboxes
(one message per session, at the number after the session's summary: a stale summary
collides and that offer takes the one-by-one path), one bulk write moves the sessions'
summaries, and one bulk write marks them `sent`. An offer found in `firing` under
another claim (a crash) is finished one by one, checking the inbox first, so it is never
written twice.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from app.chat import sessions as chat
from app.chat.flow_engine import enter, load_flow
from app.core import rollups
from app.core.config import Settings
from app.core.statuses import OfferStatus
from app.marketing.catalogue import catalogue

DUPLICATE = "duplicate event"
NO_SESSION = "no such chat session"
OPEN = (OfferStatus.SCHEDULED, OfferStatus.FIRING, OfferStatus.SENT, OfferStatus.ACCEPTED)
STATUSES = tuple(OfferStatus)
EMAIL_TRIES = 5  # a counter-offer email that fails transiently: tries in all
COUNTERS = {"_id": "marketing-offers"}  # in `counters`: offers by status, kept per change


async def _moved(db: AsyncDatabase, n: int, *, to: str, from_: str | None = None) -> None:
    """Count `n` offers moving between statuses (one update, none when n is 0)."""
    if n:
        inc = {f"offers.{to}": n, **({f"offers.{from_}": -n} if from_ else {})}
        await db.counters.update_one(COUNTERS, {"$inc": inc}, upsert=True)


async def recount(db: AsyncDatabase) -> dict[str, int]:
    """Set the counters from the offers themselves (the actor does this at start, so a
    crash between a change and its count heals with the next start)."""
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    async for row in await db.offers.aggregate([{"$group": {"_id": "$status",
                                                             "n": {"$sum": 1}}}]):
        if row["_id"] in counts:
            counts[row["_id"]] = row["n"]
    await db.counters.update_one(COUNTERS, {"$set": {"offers": counts}}, upsert=True)
    return counts


def now() -> datetime:
    return datetime.now(UTC)


def offer_id_of(journey_send: str) -> str:
    """The offer a journey's offer step makes, named from its send key (short: it
    travels in Message-IDs and chat state)."""
    return "jo-" + hashlib.blake2b(journey_send.encode(), digest_size=12).hexdigest()


def offer_text(settings: Settings) -> str:
    full = catalogue().price(settings.marketing_plan)
    price = round(full * (1 - settings.marketing_discount_pct / 100), 2)
    return settings.marketing_offer_text.format(
        discount=f"{settings.marketing_discount_pct:g}", plan=settings.marketing_plan,
        price=f"{price:.2f}", full_price=f"{full:.2f}")


async def schedule_offer(db: AsyncDatabase, settings: Settings, event: dict,
                         delay_s: float | None = None) -> tuple[dict | None, str]:
    """Persist the counter-offer for `event` (`_id`, the offer's; `session_id`, the chat
    it answers; `customer_id` or None; `journey_send`, the journey send that makes it),
    to fire after `delay_s` (the cooldown if None); returns (offer, why): offer None if
    none (`DUPLICATE`: this offer exists)."""
    existing = await db.offers.find_one({"_id": event["_id"]}, {"_id": 1})
    if existing is not None:
        return None, DUPLICATE
    customer = None
    if event.get("customer_id"):
        customer = await db.customers.find_one({"_id": event["customer_id"]})
        if customer and customer.get("unsubscribed"):
            return None, "customer unsubscribed"
    who = event.get("customer_id") or f"session:{event['session_id']}"
    if settings.marketing_window_s > 0:
        # Filter on the indexed (who, created_at) only; a customer has few offers.
        since = now() - timedelta(seconds=settings.marketing_window_s)
        recent = db.offers.find({"who": who, "created_at": {"$gte": since}}, {"status": 1})
        if any([doc["status"] in OPEN async for doc in recent]):
            return None, "already offered within the window"
    session = await db.chat_sessions.find_one({"_id": event["session_id"]},
                                              {"channel": 1, "contact": 1})
    if session is None:  # (an inbox is where the offer is accepted)
        return None, NO_SESSION
    contact = session.get("contact") or {}
    sms_to = contact.get("phone") if session.get("channel") == "sms" else None
    telegram_to = contact.get("telegram") if session.get("channel") == "telegram" else None
    whatsapp_to = contact.get("whatsapp") if session.get("channel") == "whatsapp" else None
    created = now()
    fire_at = created + timedelta(seconds=settings.marketing_cooldown_s
                                  if delay_s is None else delay_s)
    offer = {
        "_id": event["_id"], "who": who, "customer_id": event.get("customer_id"),
        "session_id": event["session_id"], "email": customer.get("email") if customer else None,
        "plan": settings.marketing_plan, "discount_pct": settings.marketing_discount_pct,
        "text": offer_text(settings), "status": OfferStatus.SCHEDULED, "created_at": created,
        "fire_at": fire_at,
        "expires_at": fire_at + timedelta(seconds=settings.marketing_offer_ttl_s),
        **({"journey_send": event["journey_send"]} if event.get("journey_send") else {}),
        **({"sms_to": sms_to} if sms_to else {}),  # a conversation by SMS: texted too
        **({"telegram_to": telegram_to} if telegram_to else {}),  # ... or in Telegram
        **({"whatsapp_to": whatsapp_to} if whatsapp_to else {}),  # ... or in WhatsApp
    }
    try:
        await db.offers.insert_one(offer)
    except DuplicateKeyError:
        return None, DUPLICATE
    await _moved(db, 1, to=OfferStatus.SCHEDULED)
    await db.events.update_one({"_id": f"offer:{offer['_id']}:scheduled"},
                               {"$setOnInsert": {"type": "offer_scheduled",
                                                 "offer_id": offer["_id"],
                                                 "customer_id": offer["customer_id"],
                                                 "session_id": offer["session_id"],
                                                 "created_at": created}}, upsert=True)
    return offer, OfferStatus.SCHEDULED


async def due_offers(db: AsyncDatabase) -> list[tuple[float, str]]:
    """(fire time, id) of every offer still to fire, for the actor's heap."""
    cursor = db.offers.find({"status": {"$in": [OfferStatus.SCHEDULED, OfferStatus.FIRING]}},
                            {"fire_at": 1})
    return [(doc["fire_at"].timestamp(), doc["_id"]) async for doc in cursor]


async def claim_for_firing(db: AsyncDatabase, offer_ids: list[str]) -> list[dict]:
    """Claim a batch of due offers: one bulk write (a conditional update per offer, each
    on the {_id, status} index: `_id` `$in` beside another field would scan the whole
    collection on the embedded database), one read by `_id`. Returns the offers now
    `firing`: those this claim took, and those a crash left `firing` (`recovered`)."""
    claim = uuid.uuid4().hex
    at = now()
    claimed = await db.offers.bulk_write(
        [UpdateOne({"_id": offer_id, "status": OfferStatus.SCHEDULED},
                   {"$set": {"status": OfferStatus.FIRING, "firing_at": at, "claim": claim}})
         for offer_id in offer_ids], ordered=False)
    await _moved(db, claimed.modified_count, from_=OfferStatus.SCHEDULED,
                 to=OfferStatus.FIRING)
    offers = [offer for offer in await db.offers.find({"_id": {"$in": offer_ids}}).to_list()
              if offer["status"] == OfferStatus.FIRING]
    for offer in offers:
        offer["recovered"] = offer.get("claim") != claim
    return offers


def _counter_offer(offer: dict):
    turn = enter(load_flow(), "counter_offer", offer_id=offer["_id"])
    turn.messages[0].text = f"{offer['text']} {turn.messages[0].text}"
    return turn


def offer_messages(offer: dict) -> list[dict]:
    """The counter-offer's messages as the inbox holds them (for an SMS or a Telegram
    message of them)."""
    return [{"role": "marketing", "text": m.text, "options": m.options}
            for m in _counter_offer(offer).messages]


def _offer_ref(offer: dict) -> dict:
    return {"id": offer["_id"], "plan": offer["plan"], "discount_pct": offer["discount_pct"],
            "expires_at": offer["expires_at"].isoformat()}


async def deliver_batch(db: AsyncDatabase, offers: list[dict]
                        ) -> tuple[dict[str, list[dict]], dict[str, Exception]]:
    """Write each offer into its session's inbox once: ({offer id: messages written,
    [] if already there}, {offer id: why it could not be, for a later retry})."""
    first: dict[str, dict] = {}  # one offer per session in the bulk insert
    one_by_one = [o for o in offers if o["recovered"]]
    for offer in offers:
        if not offer["recovered"] and first.setdefault(offer["session_id"], offer) is not offer:
            one_by_one.append(offer)
    summaries = {s["_id"]: s for s in await db.chat_sessions.find(
        {"_id": {"$in": list(first)}}, {"last_seq": 1, "state": 1, "created_at": 1}
    ).to_list()} if first else {}
    planned: dict[str, list[dict]] = {}
    for session_id, offer in first.items():
        turn = _counter_offer(offer)
        if session_id not in summaries or len(turn.messages) != 1:
            one_by_one.append(offer)  # no such session (an error below), or a longer turn
            continue
        planned[offer["_id"]] = chat.turn_docs(
            session_id, turn, customer_text=None, role="marketing", kind="offer",
            based_on=summaries[session_id].get("last_seq", 0), offer=_offer_ref(offer))
    by_offer = {offer["_id"]: offer for offer in offers}
    docs = [doc for written in planned.values() for doc in written]
    if docs:
        try:
            await db.messages.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(e["code"] != 11000 for e in exc.details["writeErrors"]):
                raise
            collided = {docs[e["index"]]["offer"]["id"] for e in exc.details["writeErrors"]}
            for offer_id in collided:  # a stale summary: the one-by-one path re-reads
                del planned[offer_id]
                one_by_one.append(by_offer[offer_id])
    if planned:
        await db.chat_sessions.bulk_write(
            [chat.summary_update(written[-1]["session_id"], written)
             for written in planned.values()], ordered=False)
        moves = rollups.Increments()  # each from the state its summary had at last_seq
        for written in planned.values():
            summary = summaries[written[-1]["session_id"]]
            if summary.get("created_at") and "state" in summary:
                moves.session_moved(rollups.day_of(summary["created_at"]),
                                    summary.get("state"), written[-1].get("state_after"))
        await rollups.write(db, moves)
    failed: dict[str, Exception] = {}
    for offer in one_by_one:
        try:
            planned[offer["_id"]] = await deliver_to_inbox(db, offer)
        except Exception as exc:
            failed[offer["_id"]] = exc
    return planned, failed


async def deliver_to_inbox(db: AsyncDatabase, offer: dict) -> list[dict]:
    """Write the counter-offer into the session's inbox once; return what was written."""
    # A session's own messages, on its unique index (few; no index per offer field).
    async for message in db.messages.find({"session_id": offer["session_id"]},
                                          {"offer.id": 1}):
        if (message.get("offer") or {}).get("id") == offer["_id"]:
            return []
    return await chat.append_system_turn(db, offer["session_id"], _counter_offer(offer),
                                         role="marketing", kind="offer",
                                         offer=_offer_ref(offer))


async def mark_sent(db: AsyncDatabase, emailed: dict[str, bool],
                    email_after: dict[str, datetime] | None = None) -> None:
    """Offer id -> whether it was emailed: one bulk write for a batch. `email_after`:
    offers whose email waits for their offline session (`mail_followups`)."""
    if not emailed:
        return
    at = now()
    later = email_after or {}
    sent = await db.offers.bulk_write(
        [UpdateOne({"_id": offer_id, "status": OfferStatus.FIRING},
                   {"$set": {"status": OfferStatus.SENT, "sent_at": at, "emailed": was,
                             **({"email_after": later[offer_id]} if offer_id in later
                                else {})}})
         for offer_id, was in emailed.items()], ordered=False)
    await _moved(db, sent.modified_count, from_=OfferStatus.FIRING, to=OfferStatus.SENT)
    counted = rollups.Increments()  # every offer of the batch was sent at `at`
    counted.offers_sent(at, sent.modified_count)
    await rollups.write(db, counted)


async def mail_followups(db: AsyncDatabase) -> list[tuple[float, str]]:
    """(email time, id) of every sent offer whose email waits (sparse index)."""
    return [(doc["email_after"].timestamp(), doc["_id"]) async for doc in db.offers.find(
        {"email_after": {"$exists": True}}, {"email_after": 1})]


async def awaiting_mail(db: AsyncDatabase, offer_ids: list[str]) -> list[dict]:
    """Of these offers, those still sent (not accepted or expired) and not emailed."""
    return [offer for offer in await db.offers.find({"_id": {"$in": offer_ids}}).to_list()
            if offer["status"] == OfferStatus.SENT and not offer.get("emailed")
            and offer.get("email_after") is not None]


async def mark_followed_up(db: AsyncDatabase, emailed: dict[str, bool],
                           retry_at: dict[str, datetime] | None = None) -> None:
    """The waits are over: emailed or not (the customer came back to the chat, or
    unsubscribed), or, for `retry_at`, another try then (a transient failure)."""
    later = retry_at or {}
    ops = [UpdateOne({"_id": offer_id}, {"$set": {"emailed": was},
                                         "$unset": {"email_after": ""}})
           for offer_id, was in emailed.items() if offer_id not in later]
    ops += [UpdateOne({"_id": offer_id}, {"$set": {"email_after": at},
                                          "$inc": {"email_attempts": 1}})
            for offer_id, at in later.items()]
    if ops:
        await db.offers.bulk_write(ops, ordered=False)


async def still_subscribed(db: AsyncDatabase, offers: list[dict]) -> list[dict]:
    """Of these offers, those whose customer has not unsubscribed since the offer was
    made (read at send time: one query for the batch)."""
    ids = [o["customer_id"] for o in offers if o.get("customer_id")]
    gone = {doc["_id"] async for doc in db.customers.find(
        {"_id": {"$in": ids}, "unsubscribed": True}, {"_id": 1})} if ids else set()
    return [o for o in offers if o.get("customer_id") not in gone]


def email_retry_at(attempts: int, base_s: float) -> datetime | None:
    """When to try a counter-offer email again after its `attempts`-th transient
    failure (doubling from `base_s`), or None when it has had its tries."""
    if attempts >= EMAIL_TRIES:
        return None
    return now() + timedelta(seconds=base_s * 2 ** (attempts - 1))


async def accept_offer(db: AsyncDatabase, event: dict) -> dict | None:
    """The customer accepted a counter-offer in the chat: plan change and conversion."""
    offer_id = (event.get("state") or {}).get("offer_id")
    if not offer_id:
        return None
    taken = await db.offers.update_one(
        {"_id": offer_id, "status": OfferStatus.SENT, "expires_at": {"$gt": now()}},
        {"$set": {"status": OfferStatus.ACCEPTED, "accepted_at": now(),
                  "accepted_by": event["_id"]}})
    await _moved(db, taken.modified_count, from_=OfferStatus.SENT, to=OfferStatus.ACCEPTED)
    # Accepted by this event now, or by this same event before a crash: ensure the
    # conversion exists (it is idempotent); anything else is not ours to convert.
    offer = await db.offers.find_one({"_id": offer_id})
    if offer is None or offer.get("accepted_by") != event["_id"]:
        return None
    if taken.modified_count:
        counted = rollups.Increments()
        counted.offer_accepted(offer.get("sent_at"), offer["accepted_at"])
        await rollups.write(db, counted)
    value = round(catalogue().price(offer["plan"]) * (1 - offer["discount_pct"] / 100), 2)
    await _convert(db, event, offer["customer_id"], offer["plan"], value, "counter_offer",
                   offer_id=offer_id, discount_pct=offer["discount_pct"])
    return offer


async def record_upgrade(db: AsyncDatabase, event: dict, plan: str) -> None:
    """The customer took the bot's own offer (no discount)."""
    await _convert(db, event, event.get("customer_id"), plan, catalogue().price(plan), "upgrade")


async def _convert(db: AsyncDatabase, event: dict, customer_id: str | None, plan: str,
                   monthly_value: float, source: str, **extra: Any) -> None:
    created = now()
    if not customer_id:
        # A session nobody proved to be a customer's (`app.chat.verification`): interest to
        # follow up, not a sale. No plan changes and billing counts nothing.
        await db.events.update_one(
            {"_id": f"interest:{event['_id']}"},
            {"$setOnInsert": {"type": "upgrade_interest", "source": source, "plan": plan,
                              "session_id": event.get("session_id"), "created_at": created,
                              **extra}},
            upsert=True)
        return
    await db.customers.update_one({"_id": customer_id},
                                  {"$set": {"plan": plan, "is_client": True}})
    stored = await db.events.update_one(
        {"_id": f"conversion:{event['_id']}"},
        {"$setOnInsert": {"type": "conversion", "source": source, "plan": plan,
                          "monthly_value": monthly_value, "customer_id": customer_id,
                          "session_id": event.get("session_id"), "created_at": created,
                          **extra}},
        upsert=True)
    if stored.upserted_id is not None:  # the first time: the billing roll-up counts it
        await rollups.add_conversion(db, created, source, monthly_value)


async def expire_offers(db: AsyncDatabase) -> int:
    result = await db.offers.update_many(
        {"status": OfferStatus.SENT, "expires_at": {"$lte": now()}},
        {"$set": {"status": OfferStatus.EXPIRED}})
    await _moved(db, result.modified_count, from_=OfferStatus.SENT, to=OfferStatus.EXPIRED)
    return result.modified_count


WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=3650))


async def _widening(query, limit: int) -> list[dict]:
    for window in WINDOWS:
        found = await query(window).to_list()
        if len(found) >= limit or window == WINDOWS[-1]:
            return found
    return []


async def marketing_overview(db: AsyncDatabase, limit: int = 20) -> dict[str, Any]:
    # Kept per change (a count over the offers would read every one of them).
    stored = (await db.counters.find_one(COUNTERS) or {}).get("offers", {})
    counts = {status: max(0, stored.get(status, 0)) for status in STATUSES}
    at = now()
    # Sorted reads in widening windows: the embedded database walks every key of an
    # index range before a limit applies, so the range is kept to what is shown.
    recent = await _widening(lambda w: db.offers.find({"created_at": {"$gte": at - w}}).sort(
        "created_at", DESCENDING).limit(limit), limit)
    reached = sum(counts.get(s, 0)
                  for s in (OfferStatus.SENT, OfferStatus.ACCEPTED, OfferStatus.EXPIRED))
    return {
        "counts": {s: counts.get(s, 0) for s in STATUSES},
        "conversion_rate": round(counts.get(OfferStatus.ACCEPTED, 0) / reached, 4)
        if reached else 0.0,
        "recent": [{"id": o["_id"], "status": o["status"], "customer_id": o.get("customer_id"),
                    "session_id": o["session_id"], "plan": o["plan"],
                    "discount_pct": o["discount_pct"], "created_at": o["created_at"].isoformat(),
                    "sent_at": o["sent_at"].isoformat() if o.get("sent_at") else None}
                   for o in recent],
    }
