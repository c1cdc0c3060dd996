"""Admin jobs: work that can take longer than a request (generating or importing
customers), run off the request path and followed through its record in `jobs`.

A job's record: `kind`, `status` (`queued`, `running`, `done`, `failed`), `total` and `done`
(progress, in items), `result` (what the synchronous call would have answered, e.g.
the import's per-row report), `error`, and when it was created and finished. The route
answers 202 with the job's id at once; `GET /api/jobs/{id}` reads the record. Progress
is written once per chunk of work, not per item.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.core.statuses import JobStatus

QUEUED, RUNNING, DONE, FAILED = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE,
                                 JobStatus.FAILED)
Progress = Callable[[int], Awaitable[None]]


def now() -> datetime:
    return datetime.now(UTC)


async def create_job(db: AsyncDatabase, kind: str, total: int | None,
                     params: dict[str, Any]) -> str:
    job_id = uuid.uuid4().hex
    await db.jobs.insert_one({"_id": job_id, "kind": kind, "status": QUEUED,
                              "total": total, "done": 0, "params": params,
                              "created_at": now()})
    return job_id


async def start(db: AsyncDatabase, job_id: str) -> None:
    """A queued job got its slot."""
    await db.jobs.update_one({"_id": job_id, "status": QUEUED},
                             {"$set": {"status": RUNNING, "started_at": now()}})


def progress_of(db: AsyncDatabase, job_id: str) -> Progress:
    """A callback that records how many items are done (a write per call)."""
    async def report(done: int) -> None:
        await db.jobs.update_one({"_id": job_id, "status": RUNNING}, {"$set": {"done": done}})
    return report


async def finish(db: AsyncDatabase, job_id: str, result: dict[str, Any],
                 total: int | None = None) -> None:
    fields: dict[str, Any] = {"status": DONE, "result": result, "finished_at": now()}
    if total is not None:
        fields.update(total=total, done=total)
    await db.jobs.update_one({"_id": job_id}, {"$set": fields})


async def fail(db: AsyncDatabase, job_id: str, error: str) -> None:
    await db.jobs.update_one({"_id": job_id}, {"$set": {
        "status": FAILED, "error": error[:500], "finished_at": now()}})


async def get_job(db: AsyncDatabase, job_id: str) -> dict[str, Any] | None:
    return await db.jobs.find_one({"_id": job_id})


def job_view(doc: dict[str, Any]) -> dict[str, Any]:
    total, done = doc.get("total"), doc.get("done", 0)
    return {"id": doc["_id"], "kind": doc["kind"], "status": doc["status"],
            "total": total, "done": done,
            "progress": round(done / total, 4) if total else (1.0 if doc["status"] == DONE
                                                              else 0.0),
            "result": doc.get("result"), "error": doc.get("error"),
            "created_at": doc["created_at"].isoformat(),
            "finished_at": doc["finished_at"].isoformat() if doc.get("finished_at") else None}
