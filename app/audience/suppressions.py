"""One suppression list: who takes no more messages on a channel, or on any, and why.

Every road in writes here: a hard bounce at send time or in a DSN, a complaint (ARF), an
unsubscribe, an SMS STOP, a channel's block, too many soft bounces, an operator. An
entry is `suppressions` `<channel>:<address>` (`channel` a channel's name, or `all`),
with its reason, detail and time; the first reason stays.

The send path never reads the list. Each entry is also written on the customers that
have the address (`opted_out`: its channels; an unsubscribe is `unsubscribed`), which
the runner reads with the audience page, and a batch asks only which of its customers
changed since that read (`consent_changed_since`, one indexed range): no command per
message. New customers get the list applied as they are imported (`apply_to`).
Lifting an entry (an operator, audited; or the customer's own opt-in) removes it and
takes the channel off those customers.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from app.core.paging import newest_first
from app.core.spreadsheets import safe_cell

ALL = "all"  # every channel: an unsubscribe
HARD_BOUNCE, SOFT_BOUNCES, COMPLAINT = "hard-bounce", "soft-bounces", "complaint"
UNSUBSCRIBE, STOP, BLOCKED, OPERATOR = "unsubscribe", "stop", "blocked", "operator"
ADDRESS_FIELDS = {"email": "email", "sms": "phone",  # where a customer keeps the address
                  "telegram": "telegram.chat_id", "whatsapp": "phone",
                  "webpush": "webpush.endpoint"}
CHANGED = "consent_changed_at"  # on a customer: when its consent last changed (indexed)
DUPLICATE = 11000


@dataclass(frozen=True)
class Entry:
    """One suppression: this address takes nothing more on `channel` (or on any)."""

    channel: str
    address: str
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.address}"

    @property
    def address_field(self) -> str:
        return ADDRESS_FIELDS.get(self.channel, "email")


def normalised(channel: str, address: str) -> str:
    return address.strip().lower() if ADDRESS_FIELDS.get(channel, "email") == "email" \
        else address.strip()


async def suppress(db: AsyncDatabase, entries: Iterable[Entry]) -> list[Entry]:
    """Add these to the list and to the customers with their addresses: one insert,
    and one update per channel. Returns the entries that were new."""
    entries = list({e.key: e for e in entries}.values())
    if not entries:
        return []
    at = datetime.now(UTC)
    new = list(entries)
    try:
        await db.suppressions.insert_many(
            [{"_id": e.key, "channel": e.channel, "address": e.address, "reason": e.reason,
              "detail": e.detail, "at": at} for e in entries], ordered=False)
    except BulkWriteError as exc:
        known = {err["keyValue"]["_id"] if "keyValue" in err else entries[err["index"]].key
                 for err in exc.details.get("writeErrors", []) if err["code"] == DUPLICATE}
        if len(known) != len(exc.details.get("writeErrors", [])):
            raise
        new = [e for e in entries if e.key not in known]
    by_channel: dict[tuple[str, str], list[str]] = defaultdict(list)
    for e in entries:
        by_channel[(e.channel, e.address_field)].append(e.address)
    for (channel, address_field), addresses in by_channel.items():
        await db.customers.update_many(
            {address_field: {"$in": addresses}, "opted_out": {"$ne": channel}},
            {"$addToSet": {"opted_out": channel},
             "$set": {f"opted_out_at.{channel}": at, CHANGED: at}})
    return new


async def lift(db: AsyncDatabase, channel: str, address: str) -> dict[str, Any] | None:
    """Take an entry off the list and its channel off the customers with the address;
    the entry, or None when there was none. Lifting `all` resubscribes them."""
    entry = await db.suppressions.find_one_and_delete({"_id": f"{channel}:{address}"})
    if entry is None:
        return None
    address_field = ADDRESS_FIELDS.get(channel, "email")
    changes: dict[str, Any] = {"$pull": {"opted_out": channel},
                               "$unset": {f"opted_out_at.{channel}": ""},
                               "$set": {CHANGED: datetime.now(UTC)}}
    if channel == ALL:
        changes["$set"]["unsubscribed"] = False
    await db.customers.update_many({address_field: address}, changes)
    return entry


async def entries_page(db: AsyncDatabase, channel: str | None, limit: int,
                       cursor: str | None = None) -> tuple[list[dict], str | None]:
    """A page of the list, newest first (all channels, or one)."""
    where = {"channel": channel} if channel else {}
    return await newest_first(db.suppressions, where, "at", limit, cursor)


async def export_csv(db: AsyncDatabase, channel: str | None) -> str:
    """The whole list (or one channel's) as CSV: channel, address, reason, at."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["channel", "address", "reason", "at"])
    async for doc in db.suppressions.find({"channel": channel} if channel else {}).sort(
            [("at", 1), ("_id", 1)]):
        writer.writerow([safe_cell(doc["channel"]), safe_cell(doc["address"]),
                         safe_cell(doc["reason"]), doc["at"].isoformat()])
    return out.getvalue()


async def count_soft_bounces(db: AsyncDatabase, entries: list[Entry], limit: int
                             ) -> list[Entry]:
    """Count one soft bounce (a send that ended dead) per entry's address; those that
    reached `limit` come back, to be suppressed. Two commands for the lot."""
    if not entries:
        return []
    keys = [e.key for e in entries]
    await db.soft_bounces.bulk_write(
        [UpdateOne({"_id": key}, {"$inc": {"count": 1}, "$set": {"last_at": datetime.now(UTC)}},
                   upsert=True) for key in keys], ordered=False)
    over = {doc["_id"] async for doc in db.soft_bounces.find(
        {"_id": {"$in": keys}, "count": {"$gte": limit}}, {"_id": 1})}
    return [Entry(e.channel, e.address, SOFT_BOUNCES, {**e.detail, "limit": limit})
            for e in entries if e.key in over]


def view(doc: dict[str, Any]) -> dict[str, Any]:
    return {"channel": doc["channel"], "address": doc["address"], "reason": doc["reason"],
            "detail": doc.get("detail") or {}, "at": doc["at"].isoformat()}


async def apply_to(db: AsyncDatabase, customers: list[dict[str, Any]]) -> None:
    """Mark new customers (before they are inserted) with the suppressions of their
    addresses: one read for the lot."""
    keys = {f"{channel}:{doc[address_field]}": (channel, doc)
            for doc in customers for channel, address_field in ADDRESS_FIELDS.items()
            if doc.get(address_field)}
    keys |= {f"{ALL}:{doc['email']}": (ALL, doc) for doc in customers if doc.get("email")}
    if not keys:
        return
    async for entry in db.suppressions.find({"_id": {"$in": list(keys)}}, {"_id": 1}):
        channel, doc = keys[entry["_id"]]
        if channel == ALL:
            doc["unsubscribed"] = True
        else:
            doc.setdefault("opted_out", []).append(channel)


async def consent_changed_since(db: AsyncDatabase, since: datetime
                                ) -> dict[str, dict[str, Any]]:
    """The customers whose consent changed at or after `since` (an unsubscribe, a
    suppression added or lifted, a signup confirmed), with what it is now: one read of
    an indexed range, which holds few."""
    return {doc["_id"]: doc async for doc in db.customers.find(
        {CHANGED: {"$gte": since}}, {"unsubscribed": 1, "opted_out": 1})}
