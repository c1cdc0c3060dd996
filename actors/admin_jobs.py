"""Admin jobs as Ray tasks: generating and importing customers run in a worker process
of their own, so the dashboard replica that accepted them keeps answering meanwhile.

The route records the job (`app.jobs`) and submits `run_job`; the task does the work,
writes its progress once per chunk and its result (or error) at the end. A task that
dies leaves its job `running` with the progress it reached (no retry: half an import
run twice would report its own rows as duplicates).
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from app import jobs
from app.customers import check_csv, generate_customers, import_csv
from app.db import close_clients
from app.runtime import Runtime
from app.xlsx_audience import xlsx_to_csv

GENERATE, IMPORT = "generate", "import"


@ray.remote(num_cpus=0.25, max_retries=0)
def run_job(job_id: str, kind: str, params: dict[str, Any], runtime: Runtime
            ) -> dict[str, Any]:
    return asyncio.run(_run(job_id, kind, params, runtime))


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
