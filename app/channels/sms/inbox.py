"""Customers' SMS, stored before the SMSC hears that we have them.

The SMS gateway's transceiver answers each `deliver_sm` once its hook returns, and the
SMSC forgets a message it got an answer for. So the hook stores a customer's message
here first (one insert) and answers after; the chat turn is taken from the stored
message, which is deleted once its turn is stored. A gateway that stops in between
finds the message here when it starts again (`waiting`), so a message the SMSC was
told we have is never lost. Its turn may then be taken twice if the gateway stopped
after the turn but before the delete (at least once, not exactly once).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase


async def store(db: AsyncDatabase, number: str, text: str) -> str:
    inbox_id = uuid.uuid4().hex
    await db.sms_inbox.insert_one({"_id": inbox_id, "number": number, "text": text,
                                   "received_at": datetime.now(UTC)})
    return inbox_id


async def waiting(db: AsyncDatabase, limit: int = 10_000) -> list[dict]:
    """Stored messages whose turn was not taken, oldest first (a gateway's restart)."""
    return await db.sms_inbox.find().sort("received_at", ASCENDING).limit(limit).to_list()


async def taken(db: AsyncDatabase, inbox_id: str) -> None:
    await db.sms_inbox.delete_one({"_id": inbox_id})
