"""Webhook routes (admins only): endpoints and the events they want, each endpoint's
recent messages and dead letters, and the replay of those dead letters."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from actors.campaign_runner import webhooks_changed
from actors.webhook_sender import egress_policy, poke
from app.access import audit
from app.core.egress import EgressRefused
from app.core.statuses import WebhookStatus
from app.integrations import webhooks
from app.integrations.models import (
    NewWebhook,
    Replayed,
    WebhookChange,
    WebhookList,
    WebhookMessages,
    WebhookView,
)
from deployments.deps import AdminOnly, Context, Cursor, Who, found, paged

router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[AdminOnly])


async def _endpoint(context: Context, endpoint_id: str) -> dict:
    return await found(webhooks.get_endpoint(context.db, endpoint_id),
                       f"webhook {endpoint_id!r}")


@router.get("", response_model=WebhookList)
async def list_webhooks(context: Context) -> dict:
    """Every endpoint with how many of its messages wait and lie dead (secrets hidden)."""
    views = []
    for doc in await webhooks.list_endpoints(context.db):
        view = webhooks.endpoint_view(doc)
        view["waiting"] = await webhooks.waiting_counts(context.db, doc["_id"])
        views.append(view)
    return {"webhooks": views, "event_types": webhooks.EVENT_TYPES}


async def _reachable(context: Context, url: str) -> None:
    """422 naming the URL when egress rules forbid it (`app.core.egress`)."""
    policy = await asyncio.to_thread(egress_policy, context.settings)  # asks Ray
    try:
        await policy.resolve(url)
    except EgressRefused as exc:
        raise HTTPException(422, [{"field": "body.url", "message": str(exc)}]) from None


@router.post("", response_model=WebhookView, status_code=201)
async def create_webhook(context: Context, who: Who, body: NewWebhook) -> dict:
    """An endpoint for these event types. Its signing secret is in this reply only.
    Internal addresses are refused unless an operator allows them (COMMS_EGRESS_ALLOW)."""
    await _reachable(context, body.url)
    doc = await webhooks.create_endpoint(
        context.db, url=body.url, events=body.events, description=body.description,
        ordered=body.ordered, max_in_flight=body.max_in_flight, created_by=who.name)
    await webhooks_changed(context.db)  # running campaigns' next batches report to it
    await audit.record(context.db, who, "webhook.create", doc["_id"],
                       {"url": webhooks.url_for_log(body.url), "events": doc["events"]})
    return webhooks.endpoint_view(doc, secret=True)


@router.patch("/{endpoint_id}", response_model=WebhookView)
async def change_webhook(context: Context, who: Who, endpoint_id: str,
                         body: WebhookChange) -> dict:
    """Change an endpoint; `enabled: true` also sends what it held back while disabled."""
    await _endpoint(context, endpoint_id)
    fields = body.model_dump(exclude_none=True)
    if not fields:
        raise HTTPException(422, [{"field": "body", "message": "nothing to change"}])
    if "url" in fields:
        await _reachable(context, fields["url"])
    doc = await webhooks.change_endpoint(context.db, endpoint_id, fields)
    if doc is None:
        raise HTTPException(404, f"no webhook {endpoint_id!r}")
    await webhooks_changed(context.db)
    if fields.get("enabled"):
        poke()
    await audit.record(context.db, who, "webhook.change", endpoint_id,
                       {**fields, **({"url": webhooks.url_for_log(fields["url"])}
                                     if "url" in fields else {})})
    return webhooks.endpoint_view(doc)


@router.delete("/{endpoint_id}", status_code=204)
async def delete_webhook(context: Context, who: Who, endpoint_id: str) -> None:
    """Remove an endpoint and its messages."""
    if not await webhooks.delete_endpoint(context.db, endpoint_id):
        raise HTTPException(404, f"no webhook {endpoint_id!r}")
    await webhooks_changed(context.db)
    await audit.record(context.db, who, "webhook.delete", endpoint_id)


@router.get("/{endpoint_id}/messages", response_model=WebhookMessages)
async def webhook_messages(context: Context, endpoint_id: str,
                           status: WebhookStatus | None = None,
                           limit: Annotated[int, Query(ge=1, le=200)] = 50,
                           cursor: Cursor = None) -> dict:
    """The endpoint's messages, newest first: all, or by status (`dead`: the dead letters)."""
    await _endpoint(context, endpoint_id)
    messages, next_cursor = await paged(webhooks.messages_of(context.db, endpoint_id,
                                                             status, limit, cursor))
    return {"messages": messages, "next_cursor": next_cursor}


@router.post("/{endpoint_id}/replay", response_model=Replayed)
async def replay_webhook(context: Context, who: Who, endpoint_id: str) -> dict:
    """Send the endpoint's dead letters again (same ids, a fresh retry schedule) and
    enable it if it was disabled."""
    await _endpoint(context, endpoint_id)
    replayed = await webhooks.replay_dead(context.db, endpoint_id)
    await webhooks_changed(context.db)  # enabled again
    poke()
    await audit.record(context.db, who, "webhook.replay", endpoint_id, {"replayed": replayed})
    return {"replayed": replayed}
