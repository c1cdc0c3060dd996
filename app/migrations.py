"""Data migrations: every change to stored documents that a new version needs, in one
place, run once per database by the launcher (never by a replica).

Each migration is idempotent, and the `migrations` collection records the ones that
have run (`_id` the migration's name, `ran_at`, `changed`), so a start-up after the
first reads one small collection and changes nothing. Add a migration at the end of
`MIGRATIONS`; never rename one that has shipped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from app.audience.customers import INSERT_CHUNK, SHARDS, bucket_of
from app.signup.store import HANDLED, MOVED, count_once


async def bucket_customers(db: AsyncDatabase) -> int:
    """Give customers stored before buckets (or without `unsubscribed`) their fields."""
    missing = [doc async for doc in db.customers.find(
        {"$or": [{"shard": {"$exists": False}}, {"unsubscribed": {"$exists": False}}]},
        {"_id": 1, "unsubscribed": 1})]
    ops = [UpdateOne({"_id": doc["_id"]}, {"$set": {
        "bucket": bucket_of(doc["_id"]), "shard": bucket_of(doc["_id"]) % SHARDS,
        "unsubscribed": bool(doc.get("unsubscribed"))}}) for doc in missing]
    for start in range(0, len(ops), INSERT_CHUNK):
        await db.customers.bulk_write(ops[start:start + INSERT_CHUNK], ordered=False)
    return len(ops)


async def rename_launch_options(db: AsyncDatabase) -> int:
    """Campaigns stored before the rename hold their launch options under `settings`
    (a word now kept for the environment's configuration): move them to `launch`."""
    result = await db.campaigns.update_many({"settings": {"$exists": True}},
                                            {"$rename": {"settings": "launch"}})
    return result.modified_count


async def count_earlier_signup_records(db: AsyncDatabase) -> int:
    """Count the signup records handled before the signup counters existed."""
    n = 0
    async for record in db.inbound_mail.find(
            {"counted": {"$ne": True}, "state": {"$in": [HANDLED, MOVED]}},
            {"kind": 1, "campaign_id": 1}):
        n += await count_once(db, record["_id"], {"kind": record.get("kind"),
                                                  "campaign_id": record.get("campaign_id")})
    return n


Migration = Callable[[AsyncDatabase], Awaitable[int]]
MIGRATIONS: list[tuple[str, Migration]] = [
    ("customers-bucketed", bucket_customers),
    ("campaigns-launch-options", rename_launch_options),
    ("signup-records-counted", count_earlier_signup_records),
]


async def run_pending(db: AsyncDatabase) -> dict[str, int]:
    """Run the migrations this database has not recorded, in order; what each changed."""
    done = {doc["_id"] async for doc in db.migrations.find({}, {"_id": 1})}
    ran: dict[str, int] = {}
    for name, migrate in MIGRATIONS:
        if name in done:
            continue
        ran[name] = await migrate(db)
        await db.migrations.replace_one(
            {"_id": name}, {"_id": name, "ran_at": datetime.now(UTC), "changed": ran[name]},
            upsert=True)
    return ran
