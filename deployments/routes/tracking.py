"""`/t/o/<token>.gif` and `/t/c/<token>?u=<link>`: the open pixel and tracked links of
campaign emails (`app.channels.email.tracking`). Public, as the links in an email must be; a token
that fails its signature check gets the same 404 whether or not its delivery exists,
and a click never redirects anywhere its token was not signed for."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from actors.journeys import hand_to_shards
from actors.metrics import FunnelMetrics
from app.campaigns.batches import now
from app.channels.email import tracking
from app.core.signing_keys import LINKS
from app.core.tokens import kid_of
from app.journeys import enrollments
from app.journeys.sending import is_journey_send, record_hit
from deployments.context import AppContext
from deployments.deps import Context

router = APIRouter(tags=["tracking"])
NO_STORE = {"Cache-Control": "no-store, max-age=0"}
REFUSED = {404: {"description": "the token's signature does not hold (for this link)",
                 "content": {"text/html": {}}}}


async def _journey_hit(context: AppContext, kind: str, send_key: str) -> None:
    """A journey email's open or click: recorded, and its first is an event for the
    enrollment that sent it (stored, then handed to its shard)."""
    event = await record_hit(context.db, kind, send_key, now())
    if event is not None:
        stored = await enrollments.store_events(context.db, [event])
        hand_to_shards(stored, context.settings.journey_shards)


def not_valid() -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>Link not valid</title>"
                        "<p>This link is not valid.</p>", 404)


@router.get("/t/o/{token}.gif", response_class=Response,
            responses={200: {"content": {"image/gif": {"schema": {
                "type": "string", "format": "binary"}}}}, **REFUSED})
async def opened(context: Context, token: str) -> Response:
    """An email was opened (its HTML's image was fetched): a 1x1 transparent GIF."""
    runtime = await context.runtime_for(LINKS, kid_of(token))
    delivery_id = tracking.verify(tracking.OPEN, token, runtime.keys)
    if delivery_id is None:
        return not_valid()
    if is_journey_send(delivery_id):
        await _journey_hit(context, tracking.OPEN, delivery_id)
        return Response(tracking.PIXEL_GIF, media_type="image/gif", headers=NO_STORE)
    channel = await tracking.record(context.db, tracking.OPEN, delivery_id, now())
    if channel is not None:
        FunnelMetrics.get().count(channel, {"opened": 1})
    return Response(tracking.PIXEL_GIF, media_type="image/gif", headers=NO_STORE)


@router.get("/t/c/{token}", response_class=RedirectResponse, status_code=302,
            responses=REFUSED)
async def clicked(context: Context, token: str,
                  u: Annotated[str, Query(max_length=4000, description="the link")]
                  ) -> Response:
    """A link in an email was followed: record it and go there."""
    runtime = await context.runtime_for(LINKS, kid_of(token))
    delivery_id = tracking.verify(tracking.CLICK, token, runtime.keys, u)
    if delivery_id is None or not u.lower().startswith(("http://", "https://")):
        return not_valid()
    if is_journey_send(delivery_id):
        await _journey_hit(context, tracking.CLICK, delivery_id)
        return RedirectResponse(u, 302, headers=NO_STORE)
    channel = await tracking.record(context.db, tracking.CLICK, delivery_id, now())
    if channel is not None:
        FunnelMetrics.get().count(channel, {"clicked": 1})
    return RedirectResponse(u, 302, headers=NO_STORE)
