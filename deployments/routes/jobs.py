"""Admin jobs: how far a generation or import has got, and its result when done."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from app.audience import jobs
from app.audience.models import JobView
from deployments.deps import Context, Signed

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Signed])


@router.get("/{job_id}", response_model=JobView,
            response_model_exclude_unset=True)
async def get_one(context: Context, job_id: str) -> dict:
    """Status (`running`, `done`, `failed`), progress (`done` of `total` items), and
    the result (e.g. an import's per-row report) or the error."""
    doc = await jobs.get_job(context.db, job_id)
    if doc is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return jobs.job_view(doc)
