"""SMS routes of local mode: the embedded SMSC's outbox, and a customer's SMS typed in
by hand (`POST /api/sms/simulate-inbound`), which reaches the SMS gateway as a real
mobile-originated `deliver_sm` would. Operators simulate; viewers read."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field

from app.audience.phones import e164, smpp_address
from app.core.models import Reply, Strict
from app.integrations.models import Outbox
from deployments.deps import Context, Signed

router = APIRouter(prefix="/sms", tags=["sms"], dependencies=[Signed])


class InboundSms(Strict):
    source: str = Field(max_length=40, description="the customer's number (E.164, or "
                        "national in COMMS_DEFAULT_REGION)")
    text: str = Field(min_length=1, max_length=1600)


class InboundAccepted(Reply):
    source: str
    destination: str


def _smsc(context: Context):
    if context.local_services is None or not context.endpoints.local_smsc:
        raise HTTPException(404, "no embedded SMSC: SMS go to an external one "
                                 "(COMMS_SMPP_HOST)")
    return context.local_services


@router.post("/simulate-inbound", status_code=202, response_model=InboundAccepted)
async def simulate_inbound(context: Context, body: InboundSms) -> dict:
    """Local mode: the embedded SMSC delivers this as an SMS from `source` to the
    service number; the SMS gateway answers it as the chatbot."""
    try:
        number = e164(body.source, context.settings.default_region)
    except ValueError as exc:
        raise HTTPException(422, [{"field": "body.source", "message": str(exc)}]) from None
    destination = context.settings.smpp_source
    await _smsc(context).sms_inbound.remote(smpp_address(number), destination, body.text)
    return {"source": number, "destination": destination}


@router.get("/outbox", response_model=Outbox, response_model_exclude_unset=True)
async def outbox(context: Context,
                 number: str | None = Query(default=None, max_length=40),
                 limit: int = Query(default=100, ge=1, le=1000)) -> dict:
    """Local mode: what the embedded SMSC received, newest first (a message once all
    its parts are in); `number` matches part of the destination."""
    return await _smsc(context).sms_outbox.remote(
        number.lstrip("+") if number else None, limit)
