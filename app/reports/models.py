"""API models of reports: what clients send (validated, with limits) and what we return."""

from __future__ import annotations

from app.core.models import Any_, Period, Reply


class PerformanceReport(Reply):
    period: Period
    campaigns: list[Any_]
    totals: Any_
    chat: Any_
    marketing: Any_


class BillingReport(Reply):
    period: Period
    currency: str
    assumptions: Any_
    totals: Any_
    revenue_by_source: Any_
    by_day: list[Any_]
    by_campaign: list[Any_]


class ReconcileReply(Reply):
    period: Period
    checked: int
    drifted: int
    drift: list[Any_]
    repaired: bool
