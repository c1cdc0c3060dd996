"""Audience routes: demo customers, CSV import with a per-row report, a listing."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Query, UploadFile

from app.customers import CsvRejected, generate_customers, import_csv
from app.models import GenerateCustomers, Tag
from deployments.deps import Admin, Context

router = APIRouter(prefix="/customers", tags=["customers"], dependencies=[Admin])
MAX_CSV_BYTES = 20 * 1024 * 1024


@router.post("/generate", status_code=201)
async def generate(context: Context, body: GenerateCustomers) -> dict:
    """Make N demo customers, tagged so a campaign can target exactly them."""
    return await generate_customers(context.db, body.count, body.domain, body.tag)


@router.post("/import")
async def import_customers(
    context: Context,
    file: Annotated[UploadFile, File(description="CSV: email, name, plan, phone, extras")],
    tag: Annotated[Tag | None, Query()] = None,
) -> dict:
    """Import the valid rows; report invalid ones and duplicates by row number."""
    raw = await file.read(MAX_CSV_BYTES + 1)
    if len(raw) > MAX_CSV_BYTES:
        raise HTTPException(413, [{"field": "file", "message": "larger than 20 MiB"}])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPException(422, [{"field": "file", "message": "not UTF-8 text"}]) from None
    try:
        report = await import_csv(context.db, text, tag)
    except CsvRejected as exc:
        raise HTTPException(422, [{"field": exc.field, "message": str(exc)}]) from None
    return {"imported": report.imported, "invalid": report.invalid,
            "duplicates": report.duplicates, "tag": tag}


@router.get("")
async def list_customers(
    context: Context,
    tag: Annotated[Tag | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict:
    """Customers, newest first, with the total count."""
    query = {"tags": tag} if tag else {}
    cursor = context.db.customers.find(query).sort("created_at", -1).limit(limit)
    customers = [{**doc, "id": doc.pop("_id"), "created_at": doc["created_at"].isoformat()}
                 async for doc in cursor]
    return {"total": await context.db.customers.count_documents(query), "customers": customers}
