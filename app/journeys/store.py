"""Journeys in MongoDB, versioned: one document per version (`<key>@<n>`), the latest
an editable draft until it is published. Publishing makes it the version new
customers enter; the one before is retired, and customers already in it finish on it
(their enrollment names its version). Paused: no one enters; archived: no one
enters and everyone inside leaves at once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app.journeys.definition import Journey

DRAFT, PUBLISHED, RETIRED, PAUSED, ARCHIVED = (
    "draft", "published", "retired", "paused", "archived")


class JourneyConflict(ValueError):
    """The change does not fit the journey's state (the message says why)."""


def now() -> datetime:
    return datetime.now(UTC)


def version_id(key: str, version: int) -> str:
    return f"{key}@{version}"


async def create(db: AsyncDatabase, key: str, journey: Journey, by: str) -> dict[str, Any]:
    """Version 1 of a new journey, a draft; JourneyConflict when the key is taken."""
    doc = _version(key, 1, journey, by)
    try:
        await db.journeys.insert_one(doc)
    except DuplicateKeyError:
        raise JourneyConflict(f"journey {key!r} exists: edit it (PUT) instead") from None
    return doc


async def edit(db: AsyncDatabase, key: str, journey: Journey, by: str) -> dict[str, Any]:
    """The journey's draft becomes `journey` (a new draft version when the latest is
    published or retired: customers inside stay on theirs)."""
    latest = await latest_version(db, key)
    if latest is None:
        raise KeyError(key)
    if latest["status"] == ARCHIVED:
        raise JourneyConflict(f"journey {key!r} is archived")
    if latest["status"] == DRAFT:
        changed = await db.journeys.find_one_and_update(
            {"_id": latest["_id"], "status": DRAFT},
            {"$set": {"definition": journey.model_dump(), "edited_at": now(),
                      "edited_by": by}}, return_document=True)
        if changed is not None:
            return changed
        raise JourneyConflict(f"journey {key!r} changed meanwhile: try again")
    doc = _version(key, latest["version"] + 1, journey, by)
    try:
        await db.journeys.insert_one(doc)
    except DuplicateKeyError:
        raise JourneyConflict(f"journey {key!r} changed meanwhile: try again") from None
    return doc


async def publish(db: AsyncDatabase, key: str) -> dict[str, Any]:
    """The latest draft becomes the version customers enter (the previous one
    retires), or a paused journey takes entries again."""
    latest = await latest_version(db, key)
    if latest is None:
        raise KeyError(key)
    if latest["status"] not in (DRAFT, PAUSED):
        raise JourneyConflict(f"journey {key!r} has no draft to publish "
                              f"(version {latest['version']} is {latest['status']})")
    await db.journeys.update_many(
        {"key": key, "status": {"$in": [PUBLISHED, PAUSED]}, "_id": {"$ne": latest["_id"]}},
        {"$set": {"status": RETIRED, "retired_at": now()}})
    await db.journeys.update_one({"_id": latest["_id"]},
                                 {"$set": {"status": PUBLISHED, "published_at": now()}})
    return {**latest, "status": PUBLISHED}


async def pause(db: AsyncDatabase, key: str) -> dict[str, Any]:
    """No one enters the journey until it is published again; those inside go on."""
    changed = await db.journeys.find_one_and_update(
        {"key": key, "status": PUBLISHED}, {"$set": {"status": PAUSED, "paused_at": now()}},
        return_document=True)
    if changed is None:
        raise JourneyConflict(f"journey {key!r} is not published")
    return changed


async def archive(db: AsyncDatabase, key: str) -> int:
    """No one enters any version again; everyone inside leaves now. Returns how many
    customers left."""
    found = await db.journeys.update_many({"key": key}, {"$set": {"status": ARCHIVED,
                                                                  "archived_at": now()}})
    if not found.matched_count:
        raise KeyError(key)
    left = await db.journey_enrollments.update_many(
        {"key": key, "status": "active"},
        {"$set": {"status": "done", "left": "archived", "left_at": now()},
         "$unset": {"due_at": "", "waiting_for": ""}})
    return left.modified_count


async def ensure_published(db: AsyncDatabase, key: str, journey: Journey, by: str
                           ) -> dict[str, Any] | None:
    """A journey shipped as data (made `by` the software, not a person): published as
    `journey` when it is missing, or when its latest version is one `by` made and
    differs (the settings it comes from changed). A version a person made or edited,
    and a journey paused or archived, stand as they are. Returns the version published
    now, or None."""
    latest = await latest_version(db, key)
    wanted = journey.model_dump()
    same = latest is not None and Journey.model_validate(
        latest["definition"]).model_dump() == wanted
    if latest is not None:
        ours = latest.get("created_by") == by and latest.get("edited_by") in (None, by)
        if not ours or latest["status"] in (PAUSED, ARCHIVED):
            return None
        if same and latest["status"] == PUBLISHED:
            return None
    try:
        if latest is None:
            await create(db, key, journey, by)
        elif not same or latest["status"] != DRAFT:
            await edit(db, key, journey, by)
        return await publish(db, key)
    except JourneyConflict:  # another launcher at the same moment: theirs stands
        return None


async def latest_version(db: AsyncDatabase, key: str) -> dict[str, Any] | None:
    return await db.journeys.find_one({"key": key}, sort=[("version", DESCENDING)])


async def versions(db: AsyncDatabase, key: str) -> list[dict[str, Any]]:
    return await db.journeys.find({"key": key}).sort("version", DESCENDING).to_list()


async def published(db: AsyncDatabase) -> list[dict[str, Any]]:
    """The versions customers enter now (one per journey)."""
    return await db.journeys.find({"status": PUBLISHED}).to_list()


async def every_journey(db: AsyncDatabase, limit: int = 200) -> list[list[dict[str, Any]]]:
    """Each journey's versions, newest version first (one read; the journeys whose
    latest version is newest first)."""
    by_key: dict[str, list[dict]] = {}
    async for doc in db.journeys.find({}, sort=[("created_at", DESCENDING)]):
        by_key.setdefault(doc["key"], []).append(doc)
    journeys = [sorted(docs, key=lambda d: -d["version"]) for docs in by_key.values()]
    return journeys[:limit]


async def definitions(db: AsyncDatabase, ids: list[str]) -> dict[str, Journey]:
    """Version id -> its definition, for these version ids."""
    return {doc["_id"]: Journey.model_validate(doc["definition"])
            async for doc in db.journeys.find({"_id": {"$in": ids}})}


def _version(key: str, version: int, journey: Journey, by: str) -> dict[str, Any]:
    return {"_id": version_id(key, version), "key": key, "version": version,
            "status": DRAFT, "definition": journey.model_dump(), "created_at": now(),
            "created_by": by}
