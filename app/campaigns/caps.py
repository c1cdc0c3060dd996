"""Frequency caps: at most `messages` campaign messages per customer in a rolling
`days`, across campaigns and channels. The operator's cap is a setting; a campaign may
set its own or turn it off; a transactional campaign (signup confirmations) is exempt.

A customer's last sends are on their record (`recent_sends`, the newest KEEP). With a
cap, a batch reads its customers' `recent_sends` once before sending (so a customer
another campaign messaged a moment ago counts), skips those at the cap (`skipped`,
"frequency cap ..."), and each flush adds its sent customers' send time in one update.
Without a cap, neither command runs. Two campaigns whose batches send to the same
customer within the same moment may both pass the check: the cap holds up to that
overlap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.core.config import Settings

KEEP = 50  # the most messages a cap may allow (FrequencyCap.messages)
TRANSACTIONAL = "transactional"  # a campaign kind the cap never applies to


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


def cap_for(campaign: dict[str, Any], settings: Settings) -> Cap | None:
    """The cap a campaign's sends keep to, if any."""
    if campaign.get("kind") == TRANSACTIONAL:
        return None
    chosen = (campaign.get("launch") or {}).get("frequency_cap")
    if chosen == "off":
        return None
    if chosen:
        return Cap(chosen["messages"], chosen["days"])
    if settings.frequency_cap_messages:
        return Cap(settings.frequency_cap_messages, settings.frequency_cap_days)
    return None


async def recent_sends(db: AsyncDatabase, ids: list[str]) -> dict[str, list[datetime]]:
    """These customers' last campaign sends (one read)."""
    return {doc["_id"]: doc.get("recent_sends", []) async for doc in db.customers.find(
        {"_id": {"$in": ids}, "recent_sends": {"$exists": True}}, {"recent_sends": 1})}


async def note_sent(db: AsyncDatabase, ids: list[str], at: datetime) -> None:
    """These customers were sent a campaign message at `at` (one update)."""
    if ids:
        await db.customers.update_many({"_id": {"$in": ids}}, {
            "$push": {"recent_sends": {"$each": [at], "$slice": -KEEP}}})
