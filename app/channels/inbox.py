"""What a messaging channel's webhook hears (a Telegram update, say), stored before the
provider hears that we have it.

The webhook answers 200 only once the update is stored (`store`: one insert, keyed by
the channel and the provider's own id, so a redelivery is known). Then the
conversation's stored updates not yet taken are claimed in order (`claim_waiting`,
each claimed once: a replica that stops after a claim leaves that turn unanswered,
never taken twice) and taken: an update whose turn failed waits for the next one of
its conversation, which takes it first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError


async def store(db: AsyncDatabase, channel: str, update_id: str, address: str, seq: int,
                update: dict[str, Any]) -> bool:
    """Keep the update (`seq` orders a conversation's updates); False when it was
    kept before (a redelivery)."""
    try:
        await db.channel_inbox.insert_one({
            "_id": f"{channel}:{update_id}", "channel": channel, "address": address,
            "seq": seq, "update": update, "taken": False, "received_at": datetime.now(UTC)})
    except DuplicateKeyError:
        return False
    return True


async def claim_waiting(db: AsyncDatabase, channel: str, address: str
                        ) -> list[dict[str, Any]]:
    """The conversation's updates not taken yet, oldest first, each now claimed by
    this caller."""
    claimed = []
    async for doc in db.channel_inbox.find(
            {"channel": channel, "address": address, "taken": False},
            {"_id": 1}).sort("seq", ASCENDING):
        won = await db.channel_inbox.find_one_and_update(
            {"_id": doc["_id"], "taken": False},
            {"$set": {"taken": True, "taken_at": datetime.now(UTC)}})
        if won is not None:
            claimed.append(won)
    return claimed
