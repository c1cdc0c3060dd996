"""Report routes: performance and billing, as JSON or as CSV / XLSX downloads."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, Response

from app.access import audit
from app.core.rollup_repair import reconcile_period
from app.reports.consolidated import (
    BadPeriod,
    billing_report,
    parse_period,
    performance_report,
    to_csv,
    to_xlsx,
)
from app.reports.models import BillingReport, PerformanceReport, ReconcileReply
from deployments.deps import AdminWrites, Context, Who

router = APIRouter(prefix="/reports", tags=["reports"], dependencies=[AdminWrites])
Format = Literal["json", "csv", "xlsx"]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# With `format=csv` or `format=xlsx` the 200 is a download instead of JSON.
DOWNLOADS = {200: {"content": {"text/csv": {"schema": {"type": "string"}},
                               XLSX: {"schema": {"type": "string", "format": "binary"}}}}}


def _period(start: str | None, end: str | None):
    try:
        return parse_period(start, end)
    except BadPeriod as exc:
        raise HTTPException(422, [{"field": f"query.{exc.field}", "message": str(exc)}]) from None


def _respond(report: dict, kind: str, fmt: str) -> Response:
    if fmt == "json":
        return JSONResponse(report)
    day = report["period"]["from"][:10], report["period"]["to"][:10]
    name = f"operator-comms-{kind}-{day[0]}-to-{day[1]}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "csv":
        return Response(to_csv(report), media_type="text/csv; charset=utf-8", headers=headers)
    return Response(to_xlsx(report, kind), media_type=XLSX, headers=headers)


@router.get("/performance", response_model=PerformanceReport, responses=DOWNLOADS)
async def performance(
    context: Context,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    campaign: Annotated[str | None, Query(max_length=64)] = None,
    format: Format = "json",  # noqa: A002 - the query parameter's name
) -> Response:
    """Deliveries, chat and marketing figures for [from, to) (default: last 30 days)."""
    start_at, end_at = _period(start, end)
    report = await performance_report(context.db, start_at, end_at, campaign)
    return _respond(report, "performance", format)


@router.get("/billing", response_model=BillingReport, responses=DOWNLOADS)
async def billing(
    context: Context,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    format: Format = "json",  # noqa: A002
) -> Response:
    """Revenue from conversions, messaging cost and the net, per campaign and per day."""
    start_at, end_at = _period(start, end)
    report = await billing_report(context.db, context.settings, start_at, end_at)
    return _respond(report, "billing", format)


@router.post("/reconcile", response_model=ReconcileReply,
             response_model_exclude_unset=True)
async def reconcile(
    context: Context,
    who: Who,
    start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    dry_run: bool = False,
) -> dict:
    """Recount the period's roll-ups from the deliveries and conversions themselves;
    report every document that drifted and, unless `dry_run`, repair it."""
    start_at, end_at = _period(start, end)
    period = {"from": start_at.isoformat(), "to": end_at.isoformat()}
    found = await reconcile_period(context.db, start_at, end_at, apply=not dry_run)
    if not dry_run:
        await audit.record(context.db, who, "reports.reconcile", None,
                           {**period, "drifted": found["drifted"]})
    return {"period": period, **found}
