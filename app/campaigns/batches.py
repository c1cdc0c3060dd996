"""A campaign's send batches in MongoDB: the queue, claims and leases on the database's
clock, and how a batch closes.

- `batches`: one document per batch of up to `batch_size` recipients, `_id`
  `<campaign>:<seq>`. The runner creates it already claimed for the task it is about
  to submit (one insert), with the audience position after it, so a restarted runner
  continues from the last batch. A batch lives through its retries: when its task
  ends it is `done`, or back to `pending` with only the recipients that need another
  attempt (`attempt` + 1, `not_before` after the backoff), or back to `pending`
  unchanged when the task was stopped (pause, cancel, a lost lease).

Exactly once rests on the delivery `_id` (`app.campaigns.ledger`), the claim token on
the batch (only its holder may renew or close it; every run has a claim of its own),
and the lease (`not_before` of a claimed batch), which begins when the runner claims
the batch, which a running task renews, and whose expiry gives a dead task's batch back.

Leases are written and judged on one clock, the database server's: their ends are set
by update pipelines from `$$NOW` (`_lease_end`), and expiry is judged against the
server's time (`database_now`), so no node's clock decides whether a lease ran out. A
task needs no clock but its own monotonic one (`app.campaigns.sending`): it sends only
until `lease_s` after it issued its last successful renewal, which is never later than
the end the server wrote.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app.core.ids import batch_id
from app.core.statuses import (
    BatchStatus,
)


def now() -> datetime:
    return datetime.now(UTC)


OPEN_BATCH = [BatchStatus.PENDING, BatchStatus.CLAIMED]


def new_claim() -> str:
    return uuid.uuid4().hex


def backoff_s(attempts: int, base_s: float = 1.0, cap_s: float = 300.0) -> float:
    """Exponential backoff with full jitter: attempt 1 waits up to base, then 2x, 4x..."""
    return random.uniform(0.5, 1.0) * min(cap_s, base_s * 2 ** max(0, attempts - 1))


def _lease_end(lease_s: float) -> dict[str, Any]:
    """The database's now plus the lease, for an update pipeline."""
    return {"$add": ["$$NOW", round(lease_s * 1000)]}


async def database_now(db: AsyncDatabase) -> datetime:
    """The database server's time (the clock leases are written with)."""
    at = (await db.command("hello"))["localTime"]  # naive: commands decode without tz
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def insert_claimed_batch(db: AsyncDatabase, campaign_id: str, seq: int,
                               customer_ids: list[str], position: list, claim: str,
                               lease_s: float) -> str | None:
    """A new batch of the audience, claimed at birth; None if a batch `seq` exists
    (a restarted runner that had created it already). One command: an upsert that
    only inserts, so the lease's end comes from the database's clock."""
    _id = batch_id(campaign_id, seq)
    # customer_ids narrow to what is left to send; recipients stay, for the recount.
    # While claimed, not_before holds the lease's end: one index serves both "what is
    # due" and "whose lease ran out".
    fields = {"campaign_id": campaign_id, "seq": seq, "customer_ids": customer_ids,
              "recipients": customer_ids, "position": position, "attempt": 0,
              "status": BatchStatus.CLAIMED, "claim": claim}
    try:
        await db.batches.update_one(
            {"_id": _id, "status": {"$exists": False}},
            [{"$set": {**{k: {"$literal": v} for k, v in fields.items()},
                       "created_at": "$$NOW", "not_before": _lease_end(lease_s)}}],
            upsert=True)
    except DuplicateKeyError:
        return None
    return _id


async def insert_pending_batch(db: AsyncDatabase, campaign_id: str, key: str,
                               customer_ids: list[str], *, new_recipients: bool = True
                               ) -> bool:
    """A batch created outside the runner (a signup confirmation, a retry of failed
    sends); False if it exists. `new_recipients=False`: its customers are recipients of
    earlier batches already (the recount finds their deliveries through those)."""
    created = now()
    try:
        await db.batches.insert_one({
            "_id": f"{campaign_id}:{key}", "campaign_id": campaign_id, "seq": None,
            "customer_ids": customer_ids,
            "recipients": customer_ids if new_recipients else [], "attempt": 0,
            "status": BatchStatus.PENDING, "claim": None,
            "not_before": created, "created_at": created})
    except DuplicateKeyError:
        return False
    return True


async def last_position(db: AsyncDatabase, campaign_id: str) -> tuple[int, list | None]:
    """(next seq, audience position after the newest batch) for a restarted runner."""
    newest = await db.batches.find(
        {"campaign_id": campaign_id}, {"seq": 1, "position": 1}).sort(
        "seq", DESCENDING).limit(1).to_list()
    if not newest or newest[0].get("seq") is None:
        return 0, None
    return newest[0]["seq"] + 1, newest[0]["position"]


async def open_batches(db: AsyncDatabase, campaign_id: str) -> list[dict]:
    """Batches not done yet: pending ones (retries, stopped, queued confirmations) and
    claimed ones (a task has them, or had them before it died)."""
    fields = {"status": 1, "not_before": 1, "attempt": 1, "claim": 1}
    return [doc async for doc in db.batches.find(
        {"campaign_id": campaign_id, "status": {"$in": OPEN_BATCH}}, fields)]


async def claim_batch(db: AsyncDatabase, batch: str, claim: str, lease_s: float) -> dict | None:
    """Claim a pending batch under a new claim; the batch (its recipients, attempt) or
    None if it is not pending. One command."""
    return await db.batches.find_one_and_update(
        {"_id": batch, "status": BatchStatus.PENDING},
        [{"$set": {"status": BatchStatus.CLAIMED, "claim": claim,
                   "not_before": _lease_end(lease_s)}}],
        projection={"customer_ids": 1, "attempt": 1})


async def renew_lease(db: AsyncDatabase, batch: str, claim: str, lease_s: float,
                      worker: dict[str, Any] | None = None) -> bool:
    """Extend the claim's lease (and note where its task runs); False when the claim is
    gone (requeued or closed)."""
    fields: dict[str, Any] = {"not_before": _lease_end(lease_s)}
    if worker is not None:
        fields["worker"] = {"$literal": worker}
    result = await db.batches.update_one({"_id": batch, "claim": claim}, [{"$set": fields}])
    return result.matched_count == 1


def close_update(remaining: list[str], attempt: int, backoff_s: float = 0.0
                 ) -> list[dict[str, Any]]:
    """The claim holder's close of its run, an update pipeline: done when nothing
    remains, else pending again with the recipients still to send at `attempt`, due
    `backoff_s` after now on the database's clock (filter: `_id` and claim). Written
    with a round's counters by `app.campaigns.rounds`, the one way a batch closes."""
    if remaining:
        fields: dict[str, Any] = {"status": BatchStatus.PENDING,
                                  "customer_ids": {"$literal": remaining}, "attempt": attempt,
                                  "not_before": _lease_end(backoff_s)}
    else:
        fields = {"status": BatchStatus.DONE, "done_at": "$$NOW"}
    return [{"$set": {**fields, "claim": None}}]


async def release_batch(db: AsyncDatabase, batch: str, claim: str) -> bool:
    """Give a claimed batch back unchanged: its task was cancelled (pause, cancel) and
    stopped, or never started."""
    result = await db.batches.update_one(
        {"_id": batch, "claim": claim},
        [{"$set": {"status": BatchStatus.PENDING, "claim": None, "not_before": "$$NOW"}}])
    return result.matched_count == 1


async def requeue_expired(db: AsyncDatabase, campaign_id: str,
                          keep: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Claimed batches whose lease ran out by the database's clock (their task is gone,
    or cut off) go back to pending, except those whose task is known to be running
    (`keep`). Each only under the claim it was seen with: a batch renewed or claimed
    anew meanwhile stays as it is. Three commands when any expired, else two."""
    at = await database_now(db)
    expired = [doc async for doc in db.batches.find(
        {"campaign_id": campaign_id, "status": BatchStatus.CLAIMED, "not_before": {"$lt": at}},
        {"_id": 1, "claim": 1}) if doc["_id"] not in keep]
    if expired:
        await db.batches.bulk_write([UpdateOne(
            {"_id": doc["_id"], "claim": doc["claim"], "status": BatchStatus.CLAIMED,
             "not_before": {"$lt": at}},
            [{"$set": {"status": BatchStatus.PENDING, "claim": None, "not_before": "$$NOW"}}])
            for doc in expired], ordered=False)
    return [doc["_id"] for doc in expired]


async def unfinished_batches(db: AsyncDatabase, campaign_id: str) -> int:
    return await db.batches.count_documents(
        {"campaign_id": campaign_id, "status": {"$in": OPEN_BATCH}})
