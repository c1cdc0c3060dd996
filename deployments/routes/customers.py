"""Audience routes: demo customers, CSV or XLSX import with a per-row report, a listing,
a customer's Telegram link.

Generating and importing run as admin jobs (`actors.admin_jobs`), off this replica:
the answer is 202 with the job's id at once (follow it at `/api/jobs/{id}`), or, with
`wait=true`, the job's result when it is done (for scripts)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Path, Query, Response, UploadFile
from pydantic import BaseModel, Field

from actors.admin_jobs import GENERATE, IMPORT, admin_jobs
from app.access import audit
from app.access.accounts import Principal
from app.audience import customers as audience
from app.audience import imports, jobs, xlsx_audience
from app.audience.models import (
    CustomerList,
    GenerateCustomers,
    GenerationResult,
    ImportResult,
    JobStarted,
)
from app.channels.telegram import linking
from app.core.models import Tag
from deployments.deps import Context, Cursor, Signed, Who, paged
from deployments.limits import IMPORT_BODY_BYTES

router = APIRouter(prefix="/customers", tags=["customers"], dependencies=[Signed])


Wait = Annotated[bool, Query(description="answer when the job is done, with its result")]


async def _start(context: Context, who: Principal, response: Response, kind: str,
                 total: int, shown: dict, params: dict, wait: bool) -> dict:
    job_id = await jobs.create_job(context.db, kind, total, shown)
    await audit.record(context.db, who, f"customers.{kind}", job_id, shown)
    done = admin_jobs(context.settings).run.remote(job_id, kind, params, context.runtime)
    if not wait:
        return {"job_id": job_id, "status_url": f"/api/jobs/{job_id}",
                "status": jobs.QUEUED, **shown}
    try:
        view = await done
    except Exception:
        view = jobs.job_view(await jobs.get_job(context.db, job_id))
        raise HTTPException(503, f"job {job_id} failed: {view['error']}") from None
    response.status_code = 201 if kind == GENERATE else 200
    return view["result"]


@router.post("/generate", status_code=202, response_model=JobStarted | GenerationResult,
             response_model_exclude_unset=True)
async def generate(context: Context, who: Who, body: GenerateCustomers, response: Response,
                   wait: Wait = False) -> dict:
    """Make N demo customers, tagged so a campaign can target exactly them (a job)."""
    batch, tag = imports.generation_tag(body.tag)
    shown = {"count": body.count, "domain": body.domain, "tag": tag}
    return await _start(context, who, response, GENERATE, body.count, shown,
                        {**shown, "batch": batch}, wait)


@router.post("/import", status_code=202, response_model=JobStarted | ImportResult,
             response_model_exclude_unset=True, max_body_size=IMPORT_BODY_BYTES)
async def import_customers(
    context: Context,
    who: Who,
    response: Response,
    file: Annotated[UploadFile, File(
        description="CSV (UTF-8) or XLSX (its first sheet): a header row with email, "
                    "and name, plan, phone and any extra columns")],
    tag: Annotated[Tag | None, Query()] = None,
    wait: Wait = False,
) -> dict:
    """Import the valid rows; report invalid ones and duplicates by row number (a job;
    a file that cannot be imported at all is refused at once)."""
    raw = await file.read(imports.MAX_IMPORT_BYTES + 1)
    if len(raw) > imports.MAX_IMPORT_BYTES:  # the body's bound lets the form's framing in
        raise HTTPException(413, [{"field": "file", "message": "larger than 20 MiB"}])
    try:
        if xlsx_audience.is_xlsx(raw):  # read in the job; here only its header and size
            rows = await asyncio.to_thread(xlsx_audience.check_xlsx, raw)
            params: dict = {"xlsx": raw}
        else:
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise HTTPException(422, [{"field": "file", "message": "neither UTF-8 text "
                                           "(CSV) nor an XLSX workbook"}]) from None
            rows = imports.check_csv(text)
            params = {"text": text}
    except imports.CsvRejected as exc:
        raise HTTPException(422, [{"field": exc.field, "message": str(exc)}]) from None
    return await _start(context, who, response, IMPORT, rows, {"tag": tag, "rows": rows},
                        {**params, "tag": tag, "rows": rows}, wait)


@router.get("", response_model=CustomerList,
            response_model_exclude_unset=True)
async def list_customers(
    context: Context,
    tag: Annotated[Tag | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Cursor = None,
) -> dict:
    """Customers, newest first, a page at a time (pass `next_cursor` back as `cursor`),
    with an estimate of how many there are (never a count of them all)."""
    page, next_cursor, estimate = await paged(
        audience.list_customers(context.db, tag, limit, cursor))
    customers = [{**doc, "id": doc.pop("_id"), "created_at": doc["created_at"].isoformat()}
                 for doc in page]
    return {"customers": customers, "next_cursor": next_cursor, "estimated_total": estimate}


class TelegramLink(BaseModel):
    link: str = Field(description=(
        "https://t.me/<bot>?start=<signed>: opened by the customer, it ties their "
        "Telegram chat to them"))


@router.post("/{customer_id}/telegram-link", response_model=TelegramLink)
async def telegram_link(context: Context, who: Who,
                        customer_id: Annotated[str, Path(max_length=36)]) -> dict:
    """A deep link that ties whoever opens it in Telegram to this customer (give it to
    them only: an email, a verified chat). Operators; audited."""
    if await context.db.customers.find_one({"_id": customer_id}, {"_id": 1}) is None:
        raise HTTPException(404, f"no customer {customer_id!r}")
    runtime = await context.runtime_for("links")
    try:
        link = linking.deep_link(context.settings.telegram_bot_username, customer_id,
                                 runtime.link_key)
    except linking.TooLong as exc:
        raise HTTPException(422, f"path.customer_id: {exc}") from None
    await audit.record(context.db, who, "telegram.link", customer_id)
    return {"link": link}
