"""SMS delivery receipts: what the SMSC says became of each part, applied in bulk.

A receipt names an SMSC message id; `sms_parts` (written with the send's outcomes)
says whose part that is. A part's state is its receipt's `stat`. A delivery takes its
`receipt` once, from its parts: `undeliverable` as soon as one part is final and not
delivered (UNDELIV, EXPIRED, REJECTD, DELETED, UNKNOWN), `delivered` when every part
is DELIVRD. That write is conditional (no receipt yet), so a repeated receipt counts
nothing twice: the campaign's `counts.delivered` / `counts.undeliverable` and the
roll-up of the delivery's creation day grow by what the write changed.

A round of receipts costs a handful of commands whatever its size: read their parts,
mark them, read the deliveries they belong to (and, for a multi-part message, its
other parts), set the deliveries that reached a final state, and count them. A
receipt whose part is not known yet (its send's flush has not landed) is kept for a
later round, for up to MATCH_FOR_S, and stored meanwhile (`sms_receipts_waiting`, one
write for a round's unmatched ones, one more when they match), so a gateway that
stops does not lose it: the next one starts with them (`stored_waiting`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from app.channels import confirmations as fallback
from app.core import rollups

CHANNEL = "sms"  # (a delivery a fallback moved on to another channel takes no receipt)
DELIVERED, UNDELIVERABLE = "delivered", "undeliverable"
FINAL_FAILURES = {"UNDELIV", "EXPIRED", "REJECTD", "DELETED", "UNKNOWN"}
MATCH_FOR_S = 600.0  # how long a receipt waits for its part to be recorded


@dataclass
class Receipt:
    smsc_id: str
    stat: str
    at: datetime
    first_seen: float = field(default_factory=time.monotonic)
    stored: bool = False  # in `sms_receipts_waiting`


async def stored_waiting(db: AsyncDatabase) -> list[Receipt]:
    """The receipts a stopped gateway was still matching (its successor's start)."""
    now_wall, now = datetime.now(UTC), time.monotonic()
    return [Receipt(doc["_id"], doc["stat"], doc["at"],
                    now - (now_wall - _aware(doc["waiting_since"])).total_seconds(), True)
            async for doc in db.sms_receipts_waiting.find()]


async def _keep_waiting(db: AsyncDatabase, later: list[Receipt], done: list[Receipt]) -> None:
    """Store the receipts that wait, and forget the stored ones that matched or expired."""
    fresh = [r for r in later if not r.stored]
    if fresh:
        try:
            await db.sms_receipts_waiting.insert_many(
                [{"_id": r.smsc_id, "stat": r.stat, "at": r.at,
                  "waiting_since": datetime.now(UTC)} for r in fresh], ordered=False)
        except BulkWriteError as exc:  # stored before (a repeated receipt)
            if any(e["code"] != 11000 for e in exc.details["writeErrors"]):
                raise
        for receipt in fresh:
            receipt.stored = True
    gone = [r.smsc_id for r in done if r.stored]
    if gone:
        await db.sms_receipts_waiting.delete_many({"_id": {"$in": gone}})


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def receipt_of(states: list[str | None]) -> str | None:
    """A delivery's receipt from its parts' states (None: not final yet)."""
    if any(state in FINAL_FAILURES for state in states):
        return UNDELIVERABLE
    if states and all(state == "DELIVRD" for state in states):
        return DELIVERED
    return None


async def apply(db: AsyncDatabase, receipts: list[Receipt]) -> tuple[dict, list[Receipt]]:
    """Apply a round of receipts; returns (counts by outcome, receipts to try again)."""
    latest: dict[str, Receipt] = {}
    for receipt in receipts:
        latest[receipt.smsc_id] = receipt
    known = {doc["_id"]: doc async for doc in db.sms_parts.find(
        {"_id": {"$in": list(latest)}}, {"delivery_id": 1, "campaign_id": 1})}
    now = time.monotonic()
    later = [r for i, r in latest.items() if i not in known and now - r.first_seen < MATCH_FOR_S]
    waiting = {r.smsc_id for r in later}
    await _keep_waiting(db, later, [r for r in receipts if r.smsc_id not in waiting])
    if not known:
        return {"unmatched": len(latest) - len(later)}, later
    await db.sms_parts.bulk_write([
        UpdateOne({"_id": i}, {"$set": {"stat": latest[i].stat, "at": latest[i].at}})
        for i in known], ordered=False)
    deliveries = {doc["_id"]: doc async for doc in db.deliveries.find(
        {"_id": {"$in": sorted({doc["delivery_id"] for doc in known.values()})},
         "receipt": {"$exists": False}, "channel": CHANNEL},
        {"smsc_ids": 1, "campaign_id": 1, "created_at": 1, "last_attempt_at": 1,
         "awaits": 1})}
    others = {p for d in deliveries.values() for p in d.get("smsc_ids", ()) if p not in known}
    states = {i: latest[i].stat for i in known}
    if others:
        states |= {doc["_id"]: doc.get("stat") async for doc in db.sms_parts.find(
            {"_id": {"$in": sorted(others)}}, {"stat": 1})}
    final: dict[str, list[tuple[str, dict]]] = defaultdict(list)  # campaign -> ...
    for did, delivery in deliveries.items():
        outcome = receipt_of([states.get(p) for p in delivery.get("smsc_ids", ())])
        if outcome is not None:
            final[delivery["campaign_id"]].append((outcome, {"_id": did, **delivery}))
    counts: dict[str, int] = {"unmatched": len(latest) - len(known) - len(later)}
    at = max(r.at for r in latest.values())
    for campaign_id, decided in final.items():
        # One conditional write per delivery, in one bulk; an outcome's count is what
        # its writes changed (a delivery another round settled first is not counted).
        by_outcome: dict[str, list[dict]] = defaultdict(list)
        for outcome, delivery in decided:
            by_outcome[outcome].append(delivery)
        increments = rollups.Increments()
        inc: dict[str, int] = {}
        for outcome, docs in by_outcome.items():
            result = await db.deliveries.update_many(
                {"_id": {"$in": [d["_id"] for d in docs]}, "receipt": {"$exists": False},
                 "channel": CHANNEL},  # (not one a fallback has moved on meanwhile)
                {"$set": {"receipt": outcome, "receipt_at": at}})
            settled = [d["_id"] for d in docs if d.get("awaits")]  # a fallback wait ends
            # (or is due); none is asked for where no delivery has one
            await (fallback.confirmed(db, CHANNEL, settled, DELIVERED)
                   if outcome == DELIVERED else fallback.failed(db, CHANNEL, settled))
            if result.modified_count:
                inc[f"counts.{outcome}"] = result.modified_count
                counts[outcome] = counts.get(outcome, 0) + result.modified_count
                if result.modified_count == len(docs):
                    for doc in docs:
                        increments.receipted(campaign_id, doc.get("created_at") or doc[
                            "last_attempt_at"], outcome)
        if inc:
            await db.campaigns.update_one({"_id": campaign_id}, {"$inc": inc})
            await rollups.write(db, increments)
    return counts, later
