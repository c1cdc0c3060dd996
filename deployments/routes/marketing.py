"""Marketing routes: the state of counter-offers for the operator."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pymongo.asynchronous.database import AsyncDatabase

from app.core.statuses import OfferStatus
from app.journeys.views import first_wait
from app.marketing import journey as counter_offer
from app.marketing.models import MarketingOverview
from app.marketing.offers import marketing_overview
from deployments.deps import Context, Signed

router = APIRouter(prefix="/marketing", tags=["marketing"], dependencies=[Signed])


@router.get("", response_model=MarketingOverview,
            response_model_exclude_unset=True)
async def overview(context: Context, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict:
    """Scheduled (with time to fire), sent, accepted, expired, conversion rate, recent."""
    return await marketing_now(context.db, limit)


async def marketing_now(db: AsyncDatabase, limit: int) -> dict:
    """The offers' overview, with `scheduled` the customers in the counter-offer
    journey's cooldown (the offer is made when it ends)."""
    overview = await marketing_overview(db, limit)
    waiting, soonest = await first_wait(db, counter_offer.KEY, limit)
    overview["counts"][OfferStatus.SCHEDULED] = waiting + overview["counts"].get(
        OfferStatus.SCHEDULED, 0)
    overview["scheduled"] = soonest
    return overview
