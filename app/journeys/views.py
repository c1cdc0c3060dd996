"""What the API and the dashboard show of a journey: its latest version, each step with
how many customers are at it and how many left it by each way, and every version's
counts (customers finish on the version they entered)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.journeys import enrollments, store
from app.journeys.definition import Journey, Wait, targets
from app.journeys.experiments import arms_view


async def journey_view(db: AsyncDatabase, key: str) -> dict[str, Any] | None:
    docs = await store.versions(db, key)
    if not docs:
        return None
    return _view(docs, await enrollments.counts(db, [d["_id"] for d in docs]))


async def journey_list(db: AsyncDatabase) -> list[dict[str, Any]]:
    """Every journey, in two reads (the versions, their counts)."""
    journeys = await store.every_journey(db)
    counted = await enrollments.counts(db, [d["_id"] for docs in journeys for d in docs])
    return [_view(docs, counted) for docs in journeys]


async def first_wait(db: AsyncDatabase, key: str, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """Who waits at the published journey's first step, a wait of fixed length (the
    counter-offer's cooldown): how many (every version's), and the `limit` whose wait
    ends soonest ({`id` of the entry event, `customer_id`, `fires_in_s`}), read from
    the entry events of the last wait's length (a sorted read of a short range, not
    of the enrollments: the dashboard asks every second). (0, []) when that step is no
    such wait."""
    docs = await store.versions(db, key)
    current = next((d for d in docs if d["status"] == store.PUBLISHED), None)
    if current is None:
        return 0, []
    journey = Journey.model_validate(current["definition"])
    first = journey.steps[0]
    if not isinstance(first, Wait):
        return 0, []
    counted = await enrollments.counts(db, [d["_id"] for d in docs])
    waiting = sum(total["at"].get(first.id, 0) for total in counted.values())
    at = datetime.now(UTC)
    entered = await db.journey_events.find(
        {"type": journey.entry.event, "stored_at": {"$gte": at - timedelta(
            seconds=first.seconds)}}).sort("stored_at", 1).limit(limit).to_list()
    soonest = [{"id": e["_id"], "customer_id": None if enrollments.is_session_member(
        e["customer_id"]) else e["customer_id"],
        "fires_in_s": round(max(0.0, first.seconds - (
            at - e["stored_at"]).total_seconds()), 1)}
        for e in entered]
    return waiting, soonest


def _view(docs: list[dict[str, Any]], counted: dict[str, dict[str, Any]]) -> dict[str, Any]:
    latest = docs[0]
    journey = Journey.model_validate(latest["definition"])
    at_all: dict[str, int] = {}
    passed_all: dict[str, dict[str, int]] = {}
    for total in (counted[d["_id"]] for d in docs):  # (this journey's versions only)
        for step, n in total["at"].items():
            at_all[step] = at_all.get(step, 0) + n
        for step, ways in total["passed"].items():
            mine = passed_all.setdefault(step, {})
            for way, n in ways.items():
                mine[way] = mine.get(way, 0) + n
    steps = [{"id": step.id, "type": step.type,
              "goes_to": sorted({t or journey.following(step.id) for t in targets(step)}),
              "at": at_all.get(step.id, 0), "left_by": passed_all.get(step.id, {})}
             for step in journey.steps]
    status = next((d["status"] for d in docs if d["status"] in (
        store.PUBLISHED, store.PAUSED)), latest["status"])
    return {"key": latest["key"], "name": journey.name, "status": status,
            "version": latest["version"], "definition": latest["definition"], "steps": steps,
            "versions": [{"version": d["version"], "status": d["status"],
                          "created_at": d["created_at"].isoformat(),
                          "experiments": arms_view(Journey.model_validate(d["definition"]),
                                                   counted[d["_id"]]),
                          **counted[d["_id"]]} for d in docs]}
