"""A customer's recent sends and the frequency cap they are held to: at most `messages`
messages in a rolling `days`, across campaigns, journeys and channels. A customer's
last sends are on their record (`recent_sends`, the newest KEEP): a sender reads them
once for a batch, skips those at the cap, and adds its sends' time in one update.
Two senders sending to the same customer within the same moment may both pass the
check: the cap holds up to that overlap. Which cap a campaign keeps to is
`app.campaigns.caps`; journeys keep to the operator's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo.asynchronous.database import AsyncDatabase

from app.core.config import Settings

KEEP = 50  # the most messages a cap may allow (FrequencyCap.messages)


@dataclass(frozen=True)
class Cap:
    messages: int
    days: float

    @property
    def reason(self) -> str:
        return f"frequency cap: {self.messages} in {self.days:g} days"

    def reached(self, sends: Iterable[datetime], now: datetime) -> bool:
        since = now - timedelta(days=self.days)
        return sum(1 for at in sends if at >= since) >= self.messages


def operator_cap(settings: Settings) -> Cap | None:
    """The operator's cap (`COMMS_FREQUENCY_CAP_*`), if one is set."""
    if settings.frequency_cap_messages:
        return Cap(settings.frequency_cap_messages, settings.frequency_cap_days)
    return None


async def recent_sends(db: AsyncDatabase, ids: list[str]) -> dict[str, list[datetime]]:
    """These customers' last sends (one read)."""
    return {doc["_id"]: doc.get("recent_sends", []) async for doc in db.customers.find(
        {"_id": {"$in": ids}, "recent_sends": {"$exists": True}}, {"recent_sends": 1})}


async def note_sent(db: AsyncDatabase, ids: list[str], at: datetime) -> None:
    """These customers were sent a message at `at` (one update)."""
    if ids:
        await db.customers.update_many({"_id": {"$in": ids}}, {
            "$push": {"recent_sends": {"$each": [at], "$slice": -KEEP}}})
