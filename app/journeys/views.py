"""What the API and the dashboard show of a journey: its latest version, each step with
how many customers are at it and how many left it by each way, and every version's
counts (customers finish on the version they entered)."""

from __future__ import annotations

from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.journeys import enrollments, store
from app.journeys.definition import Journey, targets
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
