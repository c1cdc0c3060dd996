"""Events that follow a change to one document, written in the same write as the change.

A customer who unsubscribes, a campaign that completes: the update that makes the
change also pushes the event it causes into the document's `outbox` (`entry`), so the
two cannot part. The writer then hands the events on (`hand_on`: stored as webhook
messages under the entry's key, so an event handed on twice is stored once) and pulls
them from the document. A writer that stops in between leaves them there, and `sweep`
(run by the webhook actor at its start and every few seconds) hands them on: a crash
between a change and its event loses neither.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.integrations import webhooks

COLLECTIONS = ("customers", "campaigns")  # whose documents carry an outbox (indexed)


def entry(event_type: str, data: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """An event to push into the changed document's `outbox`, in the change's update."""
    return {"key": key or f"{event_type}:{uuid.uuid4().hex}", "type": event_type,
            "data": data, "at": datetime.now(UTC)}


async def hand_on(db: AsyncDatabase, collection: str, doc_id: str,
                  entries: list[dict] | None = None) -> int:
    """Store the document's pending events as webhook messages, then take them out of
    its outbox; how many messages were stored. Raises when the database refuses: the
    events stay for the sweep."""
    if entries is None:
        doc = await db[collection].find_one({"_id": doc_id}, {"outbox": 1}) or {}
        entries = doc.get("outbox") or []
    stored = 0
    for event in entries:
        stored += await webhooks.emit(db, event["type"], event["data"], key=event["key"])
    if entries:
        await db[collection].update_one(
            {"_id": doc_id}, {"$pull": {"outbox": {"key": {"$in": [e["key"] for e in entries]}}}})
    return stored


async def sweep(db: AsyncDatabase, older_than_s: float = 5.0, limit: int = 500) -> int:
    """Hand on the events a stopped writer left (those older than `older_than_s`, so a
    writer about to hand on its own is not raced for nothing); messages stored."""
    cutoff = datetime.now(UTC) - timedelta(seconds=older_than_s)
    stored = 0
    for collection in COLLECTIONS:
        async for doc in db[collection].find({"outbox.key": {"$gt": ""}},
                                             {"outbox": 1}).limit(limit):
            left = [e for e in doc["outbox"] if _aware(e["at"]) <= cutoff]
            if left:
                stored += await hand_on(db, collection, doc["_id"], left)
    return stored


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
