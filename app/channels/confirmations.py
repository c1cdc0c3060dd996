"""A fallback rule's waits, as a channel's later reports settle them: a message its
channel confirms (delivered, read) no longer waits; one that failed after its send is
due now. The waits (`fallback_waits`, `_id` the delivery) are made with the send's
outcomes and moved on by the campaign's runner (`app.campaigns.fallback`); SMS
receipts, WhatsApp statuses and email opens end them here.

A wait belongs to the channel that sent its message (a delivery id names one wait at a
time, but a delivery moves from channel to channel): a report settles only the wait of
its own channel, so a late status of a message the delivery already left (a second
`failed` of WhatsApp after it went on by SMS) cannot end or hurry the next channel's."""

from __future__ import annotations

from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase

DELIVERED, READ = "delivered", "read"
LEVELS = {DELIVERED: 1, READ: 2}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def confirmed(db: AsyncDatabase, channel: str, delivery_ids: list[str], level: str
                    ) -> int:
    """These deliveries' messages on `channel` reached `level` (delivered, read): their
    waits for it end."""
    if not delivery_ids:
        return 0
    done = await db.fallback_waits.delete_many({
        "_id": {"$in": delivery_ids}, "channel": channel,
        "level": {"$in": [name for name, n in LEVELS.items() if n <= LEVELS[level]]}})
    return done.deleted_count


async def failed(db: AsyncDatabase, channel: str, delivery_ids: list[str]) -> int:
    """These deliveries' messages on `channel` failed after their send: their waits are
    due now."""
    if not delivery_ids:
        return 0
    done = await db.fallback_waits.update_many({"_id": {"$in": delivery_ids},
                                                "channel": channel},
                                               {"$set": {"due_at": EPOCH, "failed": True}})
    return done.modified_count
