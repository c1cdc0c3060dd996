"""Admin jobs as Ray tasks: generating and importing customers run in a worker process
of their own, so the dashboard replica that accepted them keeps answering meanwhile.

The route records the job (`app.audience.jobs`, `queued`) and hands it to the job queue, a
detached actor that runs `admin_jobs_at_once` of them at a time and keeps the rest
waiting in its own queue (Ray's queue of the actor's calls), so a burst of heavy jobs
cannot take every core from the API. A job that gets its slot is `running`; its task
does the work, writes its progress once per chunk and its result (or error) at the
end. A task that dies leaves its job `running` with the progress it reached (no retry:
half an import run twice would report its own rows as duplicates).

Teardown: `ray.kill(ray.get_actor("admin-jobs", namespace="operator-comms"))`; queued
jobs stay `queued` in their records.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from actors import registry
from app.audience import jobs
from app.audience.imports import check_csv, generate_customers, import_csv
from app.audience.xlsx_audience import xlsx_to_csv
from app.core.config import Settings
from app.core.db import close_clients
from app.core.runtime import Runtime

GENERATE, IMPORT = "generate", "import"


@ray.remote(num_cpus=0.25, max_retries=0)
def run_job(job_id: str, kind: str, params: dict[str, Any], runtime: Runtime
            ) -> dict[str, Any]:
    return asyncio.run(_run(job_id, kind, params, runtime))


@ray.remote(num_cpus=0, max_concurrency=1000)
class AdminJobQueue:
    def __init__(self, at_once: int) -> None:
        self.slots = asyncio.Semaphore(at_once)

    async def run(self, job_id: str, kind: str, params: dict[str, Any],
                  runtime: Runtime) -> dict[str, Any]:
        """Wait for a slot, then run the job as a task; its view when done."""
        async with self.slots:
            await jobs.start(runtime.database(), job_id)
            return await run_job.remote(job_id, kind, params, runtime)


def admin_jobs(settings: Settings):
    """The cluster's job queue (idempotent); its bound is the first creator's setting."""
    return registry.get_or_create(AdminJobQueue, registry.ADMIN_JOBS,
                                  settings.admin_jobs_at_once,
                                  resources=settings.actor_resources)


async def _run(job_id: str, kind: str, params: dict[str, Any], runtime: Runtime
               ) -> dict[str, Any]:
    db = runtime.database()
    progress = jobs.progress_of(db, job_id)
    try:
        if kind == GENERATE:
            result = await generate_customers(db, params["count"], params["domain"],
                                              params["tag"], batch=params["batch"],
                                              progress=progress)
            await jobs.finish(db, job_id, result)
        elif kind == IMPORT:
            text, rows = params.get("text"), params["rows"]
            if text is None:  # an XLSX: its rows as the CSV importer reads them
                text = xlsx_to_csv(params["xlsx"])
                rows = check_csv(text)
            report = await import_csv(db, text, params.get("tag"), progress,
                                      runtime.settings.default_region)
            result = {"imported": report.imported, "invalid": report.invalid,
                      "duplicates": report.duplicates, "tag": params.get("tag")}
            await jobs.finish(db, job_id, result, total=rows)
        else:
            raise ValueError(f"no such job kind: {kind}")
        return jobs.job_view(await jobs.get_job(db, job_id))
    except Exception as exc:
        await jobs.fail(db, job_id, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        await close_clients()
