"""What finished runs of a campaign's batches leave to write, written together in one
command (`app.core.bulk`): the campaign's counters, the roll-up increments, and each
run's close. The runner records a round of every task that finished (`record_round`);
a task stopped by a pause or cancel, whose summary Ray does not deliver, records its
own (`record_alone`). This is the one way a batch is closed.
"""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.campaigns import batches, ledger
from app.campaigns.batch import BatchClose, BatchJob, BatchSummary
from app.core import bulk, rollups


def stage_round(writes: bulk.Writes, campaign_id: str, campaign_update: dict[str, Any],
                increments: rollups.Increments | None, closes: list[BatchClose]) -> None:
    """Queue a round's writes: the campaign's update (its counters), the roll-up
    increments and each run's close (under its claim)."""
    if campaign_update:
        writes.update("campaigns", {"_id": campaign_id}, campaign_update)
    if increments:
        rollups.stage(writes, increments)
    for close in closes:
        writes.update("batches", {"_id": close.batch, "claim": close.claim},
                      batches.close_update(close.remaining, close.attempt, close.backoff_s))


async def record_round(db: AsyncDatabase, campaign_id: str, campaign_update: dict[str, Any],
                       increments: rollups.Increments | None, closes: list[BatchClose]
                       ) -> bool:
    """Write a round in one command; False when there was nothing to write."""
    writes = bulk.Writes(db)
    stage_round(writes, campaign_id, campaign_update, increments, closes)
    if not writes:
        return False
    await writes.apply()
    return True


async def record_alone(job: BatchJob, summary: BatchSummary) -> None:
    """A stopped run's counts, roll-ups and close, written by its own task: its summary
    does not reach the runner (Ray reports a cancelled task as cancelled)."""
    await record_round(job.runtime.database(), job.campaign_id,
                       ledger.progress_update(summary.increments(), None), summary.rollups,
                       [summary.close] if summary.close else [])
