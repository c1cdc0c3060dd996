"""The suppression list (`app.audience.suppressions`): viewers read and export it;
operators add an address by hand and lift an entry (both audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from app.access import audit
from app.audience import suppressions
from app.audience.customers import normalise_email
from app.audience.models import (
    NewSuppression,
    SuppressedChannel,
    SuppressionList,
    SuppressionView,
)
from app.audience.phones import e164
from deployments.deps import Context, Cursor, Signed, Who, paged

router = APIRouter(prefix="/suppressions", tags=["customers"], dependencies=[Signed])
ChannelQuery = Annotated[SuppressedChannel | None, Query(description="one channel's entries")]


def _address(context: Context, channel: str, raw: str) -> str:
    """The address as the list keys it (an email lower-cased, a phone in E.164); 422
    naming the field when it is not one."""
    try:
        if suppressions.ADDRESS_FIELDS.get(channel, "email") == "phone":
            return e164(raw, context.settings.default_region)
        return normalise_email(raw)
    except ValueError as exc:
        raise HTTPException(422, [{"field": "address", "message": str(exc)}]) from None


@router.get("", response_model=SuppressionList)
async def list_entries(context: Context, channel: ChannelQuery = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100,
                       cursor: Cursor = None) -> dict:
    """Who takes nothing more (on a channel, or on any), why and since when; newest
    first."""
    docs, next_cursor = await paged(suppressions.entries_page(context.db, channel, limit,
                                                              cursor))
    return {"suppressions": [suppressions.view(d) for d in docs], "next_cursor": next_cursor}


CSV = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}


@router.get("/export", response_class=Response, responses=CSV)
async def export(context: Context, channel: ChannelQuery = None) -> Response:
    """The whole list as CSV (channel, address, reason, at)."""
    return Response(await suppressions.export_csv(context.db, channel),
                    media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=suppressions.csv"})


@router.post("", response_model=SuppressionView, status_code=201)
async def add(context: Context, who: Who, body: NewSuppression) -> dict:
    """Suppress an address by hand (reason `operator`); 409 when it is already listed."""
    address = _address(context, body.channel, body.address)
    entry = suppressions.Entry(body.channel, address, suppressions.OPERATOR,
                               {"by": who.name, "note": body.note})
    if not await suppressions.suppress(context.db, [entry]):
        raise HTTPException(409, f"{body.channel}:{address} is already suppressed")
    await audit.record(context.db, who, "suppression.add", entry.key, {"note": body.note})
    doc = await context.db.suppressions.find_one({"_id": entry.key})
    return suppressions.view(doc)


@router.delete("/{channel}/{address}", response_model=SuppressionView)
async def lift(context: Context, who: Who, channel: SuppressedChannel, address: str) -> dict:
    """Lift an entry: the address may be sent to again on that channel (`all`: it is
    subscribed again)."""
    key = _address(context, channel, address)
    doc = await suppressions.lift(context.db, channel, key)
    if doc is None:
        raise HTTPException(404, f"{channel}:{key} is not suppressed")
    await audit.record(context.db, who, "suppression.lift", doc["_id"],
                       {"reason": doc["reason"]})
    return suppressions.view(doc)
