"""Recounting roll-ups from what they count (deliveries, conversions, chat sessions,
events, offers) and repairing any drift: at a campaign's completion, and on demand for
a period (`POST /api/reports/reconcile`, `operator-comms reconcile`). The roll-ups and
their writers are in `app.core.rollups`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.core.ids import delivery_id
from app.core.rollups import (
    CAMPAIGN,
    CHAT,
    CONVERSIONS,
    DELIVERY_FIELDS,
    REPORTED_EVENTS,
    Increments,
    day_of,
    days,
    key_safe,
)
from app.core.statuses import FINISHED

# A delivery is created while its batch is claimed, so before the batch is done (and
# before its campaign ends); the margin covers a stopped task's last flush and clocks.
RECORDED_AFTER_CLOSE = timedelta(hours=1)


async def deliveries_created_between(db: AsyncDatabase, lo: datetime, hi: datetime,
                                     fields: dict[str, int]):
    """The deliveries created in [lo, hi), found through the batches that could hold
    them (`_id` $in per batch, the one index deliveries keep): campaigns created before
    `hi` and not ended before `lo`, and of those the batches created before `hi` and not
    done before `lo`. The cost follows the period's campaigns, not every delivery."""
    since = lo - RECORDED_AFTER_CLOSE

    def ended_before(at: datetime | None) -> bool:
        return at is not None and at < since

    async for campaign in db.campaigns.find({}, {"status": 1, "created_at": 1,
                                                 **{f"{s}_at": 1 for s in FINISHED}}):
        created = campaign.get("created_at")
        if (created is not None and created >= hi) or (
                campaign.get("status") in FINISHED
                and ended_before(campaign.get(f"{campaign['status']}_at"))):
            continue
        wanted = [b["_id"] async for b in db.batches.find(
            {"campaign_id": campaign["_id"]}, {"created_at": 1, "done_at": 1})
            if not (b.get("created_at") and b["created_at"] >= hi)
            and not ended_before(b.get("done_at"))]
        for start in range(0, len(wanted), 100):
            async for batch in db.batches.find({"_id": {"$in": wanted[start:start + 100]}},
                                               {"recipients": 1}):
                ids = [delivery_id(campaign["_id"], c) for c in batch.get("recipients", [])]
                async for doc in db.deliveries.find({"_id": {"$in": ids}},
                                                    {**fields, "created_at": 1}):
                    if lo <= doc["created_at"] < hi:
                        yield doc



def fold(deliveries: Iterable[dict]) -> dict[str, dict]:
    """The campaign roll-ups of these deliveries, computed from scratch."""
    increments = Increments()
    for doc in deliveries:
        increments.outcome(doc["campaign_id"], doc, None)
    return increments.docs()


def fold_conversions(events: Iterable[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for event in events:
        day = day_of(event["created_at"])
        doc = out.setdefault(f"{CONVERSIONS}|{day}", {"kind": CONVERSIONS, "day": day,
                                                      "n": {}, "monthly": {}})
        source = key_safe(event.get("source") or "other")
        doc["n"][source] = doc["n"].get(source, 0) + 1
        doc["monthly"][source] = round(doc["monthly"].get(source, 0.0)
                                       + float(event.get("monthly_value") or 0.0), 6)
    return out


def fold_chat(sessions: Iterable[dict], events: Iterable[dict], sent: Iterable[dict],
              accepted: Iterable[dict]) -> dict[str, dict]:
    """The chat roll-ups of these sessions (by their summary), events and offers (sent,
    and accepted), computed from scratch."""
    increments = Increments()
    for session in sessions:
        increments.session_created(session["created_at"], session)
    for event in events:
        increments.event(event)
    for offer in sent:
        increments.offers_sent(offer["sent_at"], 1)
    for offer in accepted:
        increments.offer_accepted(offer.get("sent_at"), offer["accepted_at"])
    return increments.docs()


def _comparable(doc: dict) -> dict:
    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            cleaned = {k: clean(v) for k, v in value.items()}
            return {k: v for k, v in cleaned.items() if v not in (0, 0.0, None, {})}
        if isinstance(value, datetime):
            return value.replace(tzinfo=None, microsecond=value.microsecond // 1000 * 1000)
        if isinstance(value, float):
            return round(value, 6)
        return value

    cleaned = clean({k: v for k, v in doc.items() if k != "_id"})
    # A document whose every figure went back to zero (a bounce took back a send day's
    # only email) is the same as none.
    return cleaned if set(cleaned) - {"kind", "campaign_id", "day"} else {}


async def reconcile(db: AsyncDatabase, expected: dict[str, dict], stored: list[dict],
                    *, apply: bool = True) -> dict[str, Any]:
    """Compare stored roll-ups with a recount; write the recount where they differ.
    Returns what was checked and each drifted document's differing fields."""
    have = {doc["_id"]: doc for doc in stored}
    drift = []
    writes = []
    for _id in sorted(set(expected) | set(have)):
        want, got = _comparable(expected.get(_id, {})), _comparable(have.get(_id, {}))
        if want != got:
            fields = sorted({k for k in set(want) | set(got) if want.get(k) != got.get(k)})
            drift.append({"id": _id, "fields": fields})
            if _id in expected:
                writes.append((_id, expected[_id]))
    if apply:
        for _id, doc in writes:
            await db.rollups.replace_one({"_id": _id}, doc, upsert=True)
        gone = [d["id"] for d in drift if d["id"] not in expected]
        if gone:
            await db.rollups.delete_many({"_id": {"$in": gone}})
    return {"checked": len(set(expected) | set(have)), "drifted": len(drift),
            "drift": drift[:100], "repaired": apply}


async def reconcile_period(db: AsyncDatabase, start: datetime, end: datetime,
                           apply: bool = True) -> dict[str, Any]:
    """Recount a period's roll-ups from the deliveries created in it (and the
    conversions, chat sessions, events and offers of it), compare, repair.

    A chat replica writes a session's summary a moment before its roll-up move: a
    recount in that moment counts the move twice (the next reconcile mends it)."""
    first, last = days(start, end)
    lo = datetime.fromisoformat(first).replace(tzinfo=UTC)
    hi = datetime.fromisoformat(last).replace(tzinfo=UTC)
    increments = Increments()
    async for doc in deliveries_created_between(db, lo, hi, DELIVERY_FIELDS):
        increments.outcome(doc["campaign_id"], doc, None)
    # Emails count on their send day: keep only the days of this period.
    expected = {k: v for k, v in increments.docs().items() if first <= v["day"] < last}
    conversions = db.events.find({"type": "conversion", "created_at": {"$gte": lo, "$lt": hi}},
                                 {"created_at": 1, "source": 1, "monthly_value": 1})
    expected.update(fold_conversions([e async for e in conversions]))
    period = {"$gte": lo, "$lt": hi}
    expected.update(fold_chat(
        await db.chat_sessions.find({"created_at": period},
                                    {"created_at": 1, "ended": 1, "node": 1}).to_list(),
        [e for kind in REPORTED_EVENTS for e in await db.events.find(
            {"type": kind, "created_at": period}, {"type": 1, "created_at": 1}).to_list()],
        await db.offers.find({"sent_at": period}, {"sent_at": 1}).to_list(),
        await db.offers.find({"accepted_at": period}, {"sent_at": 1, "accepted_at": 1}
                             ).to_list()))
    stored = [doc for kind in (CAMPAIGN, CONVERSIONS, CHAT) for doc in await db.rollups.find(
        {"kind": kind, "day": {"$gte": first, "$lt": last}}).to_list()]
    return await reconcile(db, expected, stored, apply=apply)


LATE = ("receipts", "opened", "clicked")  # written by receipts, statuses and hits, which
LATE_STAGES = ("delivered", "read", "clicked", "undeliverable")  # go on after completion


def _with_late_as_stored(expected: dict[str, dict], stored: list[dict]) -> dict[str, dict]:
    """The recount, with the figures that receipts, statuses and tracking hits still
    write kept as stored: a delivery they changed a moment before its roll-up's `$inc`
    lands would be counted by the repair, then again by that `$inc`."""
    have = {doc["_id"]: doc for doc in stored}
    out = {}
    for _id, doc in expected.items():
        doc = {k: v for k, v in doc.items() if k not in LATE}
        got = have.get(_id, {})
        doc.update({k: got[k] for k in LATE if k in got})
        funnel = {channel: {s: n for s, n in stages.items() if s not in LATE_STAGES}
                  for channel, stages in (doc.get("funnel") or {}).items()}
        for channel, stages in (got.get("funnel") or {}).items():
            funnel.setdefault(channel, {}).update(
                {s: n for s, n in stages.items() if s in LATE_STAGES})
        if funnel:
            doc["funnel"] = funnel
        out[_id] = doc
    return out


async def reconcile_campaign(db: AsyncDatabase, campaign_id: str,
                             increments: Increments) -> dict[str, Any]:
    """Compare one campaign's roll-ups with `increments` folded from all its
    deliveries (at its completion), and repair them: all but what receipts, statuses
    and tracking hits still write (`reconcile_period` repairs those too)."""
    stored = await db.rollups.find({"kind": CAMPAIGN, "campaign_id": campaign_id}).to_list()
    return await reconcile(db, _with_late_as_stored(increments.docs(), stored), stored)
