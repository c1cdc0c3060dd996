"""API models of marketing: what clients send (validated, with limits) and what we return."""

from __future__ import annotations

from app.core.models import Any_, Reply


class MarketingOverview(Reply):
    counts: dict[str, int]
    conversion_rate: float
    scheduled: list[Any_]
    recent: list[Any_]
