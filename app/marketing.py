"""Reactive marketing in MongoDB: counter-offers after a refusal, their firing, acceptance.

An offer is keyed by the refusal event that caused it, so a repeated event makes no
second one. Firing moves it `scheduled` -> `firing` in one atomic update (two actors,
or a restarted one, cannot both take it), writes the counter-offer into the
customer's inbox unless it is already there, then marks it `sent`; an offer found in
`firing` after a crash is finished the same way, never written twice.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app import chat
from app.catalogue import catalogue
from app.config import Settings
from app.flow_engine import enter, load_flow

OPEN = ("scheduled", "firing", "sent", "accepted")


def now() -> datetime:
    return datetime.now(UTC)


def offer_text(settings: Settings) -> str:
    full = catalogue().price(settings.marketing_plan)
    price = round(full * (1 - settings.marketing_discount_pct / 100), 2)
    return settings.marketing_offer_text.format(
        discount=f"{settings.marketing_discount_pct:g}", plan=settings.marketing_plan,
        price=f"{price:.2f}", full_price=f"{full:.2f}")


async def schedule_offer(db: AsyncDatabase, settings: Settings, event: dict,
                         delay_s: float | None = None) -> tuple[dict | None, str]:
    """Persist the counter-offer for a refusal; returns (offer, why) — offer None if none."""
    existing = await db.offers.find_one({"_id": event["_id"]})
    if existing is not None:
        return None, "duplicate event"
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
    created = now()
    fire_at = created + timedelta(seconds=settings.marketing_cooldown_s
                                  if delay_s is None else delay_s)
    offer = {
        "_id": event["_id"], "who": who, "customer_id": event.get("customer_id"),
        "session_id": event["session_id"], "email": customer.get("email") if customer else None,
        "plan": settings.marketing_plan, "discount_pct": settings.marketing_discount_pct,
        "text": offer_text(settings), "status": "scheduled", "created_at": created,
        "fire_at": fire_at,
        "expires_at": fire_at + timedelta(seconds=settings.marketing_offer_ttl_s),
    }
    try:
        await db.offers.insert_one(offer)
    except DuplicateKeyError:
        return None, "duplicate event"
    await db.events.update_one({"_id": f"offer:{offer['_id']}:scheduled"},
                               {"$setOnInsert": {"type": "offer_scheduled",
                                                 "offer_id": offer["_id"],
                                                 "customer_id": offer["customer_id"],
                                                 "session_id": offer["session_id"],
                                                 "created_at": created}}, upsert=True)
    return offer, "scheduled"


async def due_offers(db: AsyncDatabase) -> list[tuple[float, str]]:
    """(fire time, id) of every offer still to fire, for the actor's heap."""
    cursor = db.offers.find({"status": {"$in": ["scheduled", "firing"]}}, {"fire_at": 1})
    return [(doc["fire_at"].timestamp(), doc["_id"]) async for doc in cursor]


async def take_for_firing(db: AsyncDatabase, offer_id: str) -> dict | None:
    """Atomically claim a due offer (or one a crash left in `firing`).

    A conditional update_one (its modified_count says who won) then a read: as atomic
    as findAndModify, which the embedded database runs about 100x slower. One
    equality per filter, so {_id, status} stays on its index."""
    for status in ("scheduled", "firing"):
        won = await db.offers.update_one({"_id": offer_id, "status": status},
                                         {"$set": {"status": "firing", "firing_at": now()}})
        if won.modified_count == 1 or (status == "firing" and won.matched_count == 1):
            return await db.offers.find_one({"_id": offer_id})
    return None


async def deliver_to_inbox(db: AsyncDatabase, offer: dict) -> list[dict]:
    """Write the counter-offer into the session's inbox once; return what was written."""
    already = await db.messages.find_one({"session_id": offer["session_id"],
                                          "offer.id": offer["_id"]})
    if already is not None:
        return []
    turn = enter(load_flow(), "counter_offer", offer_id=offer["_id"])
    turn.messages[0].text = f"{offer['text']} {turn.messages[0].text}"
    return await chat.append_system_turn(
        db, offer["session_id"], turn, role="marketing", kind="offer",
        offer={"id": offer["_id"], "plan": offer["plan"], "discount_pct": offer["discount_pct"],
               "expires_at": offer["expires_at"].isoformat()})


async def mark_sent(db: AsyncDatabase, offer_id: str, emailed: bool) -> None:
    await db.offers.update_one({"_id": offer_id, "status": "firing"},
                               {"$set": {"status": "sent", "sent_at": now(),
                                         "emailed": emailed}})


async def accept_offer(db: AsyncDatabase, event: dict) -> dict | None:
    """The customer accepted a counter-offer in the chat: plan change and conversion."""
    offer_id = (event.get("state") or {}).get("offer_id")
    if not offer_id:
        return None
    await db.offers.update_one(
        {"_id": offer_id, "status": "sent", "expires_at": {"$gt": now()}},
        {"$set": {"status": "accepted", "accepted_at": now(), "accepted_by": event["_id"]}})
    # Accepted by this event now, or by this same event before a crash: ensure the
    # conversion exists (it is idempotent); anything else is not ours to convert.
    offer = await db.offers.find_one({"_id": offer_id})
    if offer is None or offer.get("accepted_by") != event["_id"]:
        return None
    value = round(catalogue().price(offer["plan"]) * (1 - offer["discount_pct"] / 100), 2)
    await _convert(db, event, offer["customer_id"], offer["plan"], value, "counter_offer",
                   offer_id=offer_id, discount_pct=offer["discount_pct"])
    return offer


async def record_upgrade(db: AsyncDatabase, event: dict, plan: str) -> None:
    """The customer took the bot's own offer (no discount)."""
    await _convert(db, event, event.get("customer_id"), plan, catalogue().price(plan), "upgrade")


async def _convert(db: AsyncDatabase, event: dict, customer_id: str | None, plan: str,
                   monthly_value: float, source: str, **extra: Any) -> None:
    if customer_id:
        await db.customers.update_one({"_id": customer_id},
                                      {"$set": {"plan": plan, "is_client": True}})
    await db.events.update_one(
        {"_id": f"conversion:{event['_id']}"},
        {"$setOnInsert": {"type": "conversion", "source": source, "plan": plan,
                          "monthly_value": monthly_value, "customer_id": customer_id,
                          "session_id": event.get("session_id"), "created_at": now(),
                          **extra}},
        upsert=True)


async def expire_offers(db: AsyncDatabase) -> int:
    result = await db.offers.update_many({"status": "sent", "expires_at": {"$lte": now()}},
                                         {"$set": {"status": "expired"}})
    return result.modified_count


async def marketing_overview(db: AsyncDatabase, limit: int = 20) -> dict[str, Any]:
    counts = {status: await db.offers.count_documents({"status": status})
              for status in ("scheduled", "firing", "sent", "accepted", "expired")}
    at = now()
    upcoming = await db.offers.find({"status": "scheduled"}).sort(
        "fire_at", ASCENDING).limit(limit).to_list()
    recent = await db.offers.find({}).sort("created_at", DESCENDING).limit(limit).to_list()
    reached = sum(counts.get(s, 0) for s in ("sent", "accepted", "expired"))
    return {
        "counts": {s: counts.get(s, 0) for s in ("scheduled", "firing", "sent", "accepted",
                                                 "expired")},
        "conversion_rate": round(counts.get("accepted", 0) / reached, 4) if reached else 0.0,
        "scheduled": [{"id": o["_id"], "customer_id": o.get("customer_id"),
                       "fires_in_s": round((o["fire_at"] - at).total_seconds(), 1)}
                      for o in upcoming],
        "recent": [{"id": o["_id"], "status": o["status"], "customer_id": o.get("customer_id"),
                    "session_id": o["session_id"], "plan": o["plan"],
                    "discount_pct": o["discount_pct"], "created_at": o["created_at"].isoformat(),
                    "sent_at": o["sent_at"].isoformat() if o.get("sent_at") else None}
                   for o in recent],
    }
