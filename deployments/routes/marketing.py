"""Marketing routes: the state of counter-offers for the operator."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.marketing.models import MarketingOverview
from app.marketing.offers import marketing_overview
from deployments.deps import Context, Signed

router = APIRouter(prefix="/marketing", tags=["marketing"], dependencies=[Signed])


@router.get("", response_model=MarketingOverview,
            response_model_exclude_unset=True)
async def overview(context: Context, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict:
    """Scheduled (with time to fire), sent, accepted, expired, conversion rate, recent."""
    return await marketing_overview(context.db, limit)
