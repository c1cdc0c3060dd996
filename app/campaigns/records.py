"""Campaigns in MongoDB: creation, launch and status changes, bounces, standing
campaigns (a signup's), and the runner's view of one.

A campaign's batches are in `app.campaigns.batches`, its deliveries and counters in
`app.campaigns.ledger`, its API view in `app.campaigns.view`.
"""

from __future__ import annotations

import uuid
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.campaigns.batches import insert_pending_batch, now, unfinished_batches
from app.campaigns.ledger import empty_counts
from app.campaigns.models import CampaignCreate, LaunchOptions
from app.core import rollups
from app.core.paging import WHOLE, newest_first
from app.core.statuses import (
    ACTIVE,
    CampaignStatus,
    DeliveryStatus,
)


async def create_campaign(db: AsyncDatabase, spec: CampaignCreate, created_by: str) -> dict:
    doc = {
        "_id": uuid.uuid4().hex[:16],
        "name": spec.name,
        "templates": {"subject": spec.subject, "body_text": spec.body_text,
                      "body_html": spec.body_html},
        "audience": spec.audience.model_dump(),
        "tracking": spec.tracking.model_dump(),
        "channel": spec.channel,
        **({"fallback": spec.fallback} if spec.fallback else {}),
        **({"customers_choice": True} if spec.customers_choice else {}),
        **({"fallback_after_s": spec.fallback_after_s, "confirm": spec.confirm}
           if spec.fallback_after_s else {}),
        **({"channel_options": spec.channel_options.model_dump(exclude_none=True)}
           if spec.channel_options.model_dump(exclude_none=True) else {}),
        "status": CampaignStatus.DRAFT,
        "counts": empty_counts(),
        "retries": 0,
        "by_node": {},
        "by_worker": {},
        "timeline": [],
        "created_at": now(),
        "created_by": created_by,
    }
    await db.campaigns.insert_one(doc)
    return doc


async def record_bounce(db: AsyncDatabase, delivery: dict, fields: dict[str, Any]) -> bool:
    """A sent delivery bounced: failed now, with the campaign's counters and the
    reports' roll-ups moved with it. False if it was no longer `sent` (counted once)."""
    fields = {**fields, "status": DeliveryStatus.FAILED}
    moved = await db.deliveries.update_one(
        {"_id": delivery["_id"], "status": DeliveryStatus.SENT}, {"$set": fields})
    if not moved.modified_count:
        return False
    await db.campaigns.update_one({"_id": delivery["campaign_id"]},
                                  {"$inc": {"counts.sent": -1, "counts.failed": 1}})
    increments = rollups.Increments()
    increments.bounced(delivery["campaign_id"], delivery, fields)
    await rollups.write(db, increments)
    return True


async def ensure_standing_campaign(db: AsyncDatabase, campaign_id: str, *, name: str,
                                   kind: str, tag: str, templates: dict[str, Any],
                                   options: dict[str, Any], created_by: str) -> None:
    """A campaign that stays (e.g. signup confirmations): created complete if missing,
    its templates set to these; reopened by `reopen_standing_campaign`."""
    started = now()
    await db.campaigns.update_one(
        {"_id": campaign_id},
        {"$setOnInsert": {
            "name": name, "kind": kind, "audience": {"tag": tag},
            "status": CampaignStatus.COMPLETED, "counts": empty_counts(),
            "retries": 0, "by_node": {}, "by_worker": {}, "timeline": [],
            "launch": options, "audience_done": True, "audience_pages": 0,
            "created_at": started, "launched_at": started, "completed_at": started,
            "created_by": created_by},
         "$set": {"templates": templates}},
        upsert=True)


async def add_recipient(db: AsyncDatabase, campaign_id: str, key: str,
                        customer_id: str) -> bool:
    """One more recipient for a standing campaign, in a batch of its own keyed by `key`
    (at most one ever); True if new."""
    created = await insert_pending_batch(db, campaign_id, key, [customer_id])
    if created:
        await db.campaigns.update_one({"_id": campaign_id}, {"$inc": {"counts.total": 1}})
    return created


async def reopen_standing_campaign(db: AsyncDatabase, campaign_id: str) -> bool:
    """Running again if it holds unsent batches; True when its runner should run."""
    if await unfinished_batches(db, campaign_id) == 0:
        return False
    await db.campaigns.update_one(
        {"_id": campaign_id, "status": CampaignStatus.COMPLETED},
        {"$set": {"status": CampaignStatus.RUNNING, "launched_at": now()}})
    doc = await db.campaigns.find_one({"_id": campaign_id}, {"status": 1})
    return doc is not None and doc["status"] == CampaignStatus.RUNNING


async def get_campaign(db: AsyncDatabase, campaign_id: str) -> dict | None:
    return await db.campaigns.find_one({"_id": campaign_id})


RUNNER_FIELDS = {"status": 1, "launch": 1, "templates": 1, "audience": 1, "tracking": 1,
                 "channel": 1, "fallback": 1, "customers_choice": 1,
                 "fallback_after_s": 1, "confirm": 1, "channel_options": 1,
                 "audience_pages": 1, "audience_done": 1, "audience_seen_page": 1,
                 "counts": 1, "retries": 1, "retry_rounds": 1, "kind": 1}


async def campaign_state(db: AsyncDatabase, campaign_id: str) -> dict | None:
    """What the runner needs, without the growing timeline."""
    return await db.campaigns.find_one({"_id": campaign_id}, RUNNER_FIELDS)


async def campaign_status(db: AsyncDatabase, campaign_id: str) -> str | None:
    doc = await db.campaigns.find_one({"_id": campaign_id}, {"status": 1})
    return doc["status"] if doc else None


async def list_campaigns(db: AsyncDatabase, limit: int = 50, cursor: str | None = None
                         ) -> tuple[list[dict], str | None]:
    """(a page of campaigns, newest first, without their timelines; the next cursor)."""
    # Campaigns number in the hundreds: one query (the live dashboard asks each second).
    return await newest_first(db.campaigns, {}, "created_at", limit, cursor, {"timeline": 0},
                              windows=WHOLE)


async def active_campaign_ids(db: AsyncDatabase) -> list[str]:
    return [doc["_id"] async for doc in db.campaigns.find({"status": {"$in": list(ACTIVE)}},
                                                          {"_id": 1})]


async def launch_campaign(db: AsyncDatabase, campaign_id: str, options: LaunchOptions,
                          connections: int, audience_pages: int) -> dict | None:
    """draft -> running; None when not a draft. The audience is counted as the runner
    reads it, a page at a time (`counts.total` grows, `audience_done` at the end), so
    a launch over a million customers answers at once."""
    launch = {**options.model_dump(), "connections": options.connections or connections}
    won = await db.campaigns.update_one(
        {"_id": campaign_id, "status": CampaignStatus.DRAFT},
        {"$set": {"status": CampaignStatus.RUNNING, "launch": launch, "launched_at": now(),
                  "audience_pages": audience_pages, "audience_done": False,
                  "audience_seen_page": -1, "counts.total": 0}})
    return await get_campaign(db, campaign_id) if won.modified_count == 1 else None


async def change_status(db: AsyncDatabase, campaign_id: str, allowed_from: tuple[str, ...],
                        to: str, event: dict[str, Any] | None = None, **extra: Any) -> bool:
    """Move the campaign to `to` if it is in `allowed_from`; with `event` (an
    `app.integrations.outbox.entry`), the event goes in the same update, for the caller
    to hand on."""
    result = await db.campaigns.update_one(
        {"_id": campaign_id, "status": {"$in": list(allowed_from)}},
        {"$set": {"status": to, f"{to}_at": now(), **extra},
         **({"$push": {"outbox": event}} if event else {})},
    )
    return result.modified_count == 1


async def fail_campaign(db: AsyncDatabase, campaign_id: str, reason: str) -> bool:
    """Stop a campaign for a reason that every delivery would share (e.g. bad SMTP login)."""
    return await change_status(db, campaign_id, ACTIVE, CampaignStatus.FAILED,
                               failure_reason=reason)


async def set_audience_done(db: AsyncDatabase, campaign_id: str) -> None:
    await db.campaigns.update_one({"_id": campaign_id}, {"$set": {"audience_done": True}})
