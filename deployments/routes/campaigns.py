"""Campaign routes: preview, create, launch, pause, resume, cancel, status."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from actors.campaign_runner import status_changed, tasks_in_flight
from actors.webhook_sender import publish
from app.access import audit
from app.access.accounts import Principal
from app.audience.customers import audience_pages, estimated_customers, find_by_email
from app.campaigns import records as campaigns
from app.campaigns import retry
from app.campaigns.batches import now
from app.campaigns.models import (
    CampaignCreate,
    CampaignList,
    CampaignView,
    LaunchOptions,
    PreviewReply,
    PreviewRequest,
    RetryReply,
)
from app.campaigns.view import campaign_view
from app.channels.base import variables
from app.channels.email import composer
from app.channels.registry import channel_named
from app.channels.templates import TemplateProblem, compile_templates, render_off_loop
from app.core import rollups
from app.core.statuses import ACTIVE, CampaignStatus
from app.core.tokens import unsubscribe_url
from deployments.context import AppContext
from deployments.deps import Context, Cursor, Signed, Who, found, paged

router = APIRouter(prefix="/campaigns", tags=["campaigns"], dependencies=[Signed])

SAMPLE_CUSTOMER = {"_id": "sample", "email": "ana.silva@example.com", "name": "Ana Silva",
                   "plan": "Basic", "phone": "+5511900000000", "is_client": True, "vars": {}}


def _template_error(exc: TemplateProblem) -> HTTPException:
    return HTTPException(422, [exc.as_detail()])


async def _found(context: AppContext, campaign_id: str) -> dict:
    return await found(campaigns.get_campaign(context.db, campaign_id),
                       f"campaign {campaign_id!r}")


@router.post("/preview", response_model=PreviewReply,
             response_model_exclude_unset=True)
async def preview(context: Context, body: PreviewRequest) -> dict:
    """Render the templates for a sample (or named) customer."""
    customer = SAMPLE_CUSTOMER
    if body.customer_email:
        found = await find_by_email(context.db, body.customer_email)
        if found is None:
            raise HTTPException(404, f"no customer {body.customer_email!r}")
        customer = found
    link = unsubscribe_url(context.settings.public_url, composer.PREVIEW_TOKEN)
    try:
        subject, text, html = await render_off_loop(
            compile_templates(body.subject, body.body_text, body.body_html),
            variables(customer, link))
    except TemplateProblem as exc:
        raise _template_error(exc) from None
    reply = {"subject": subject, "body_text": text, "body_html": html,
             "customer": customer["email"]}
    channel = channel_named(body.channel)
    shown = channel.preview(text, customer)
    if shown is not None:
        reply[channel.name] = shown
    return reply


@router.post("", status_code=201, response_model=CampaignView,
             response_model_exclude_unset=True)
async def create(context: Context, who: Who, body: CampaignCreate) -> dict:
    """A draft campaign; templates are checked now, not at send time."""
    try:
        compiled = compile_templates(body.subject, body.body_text, body.body_html)
        await render_off_loop(compiled, variables(SAMPLE_CUSTOMER, "x"))
    except TemplateProblem as exc:
        if "undefined" not in exc.message:  # imported columns may define more variables
            raise _template_error(exc) from None
    doc = await campaigns.create_campaign(context.db, body, created_by=who.name)
    await audit.record(context.db, who, "campaign.create", doc["_id"], {"name": body.name})
    return campaign_view(doc)


@router.get("", response_model=CampaignList,
            response_model_exclude_unset=True)
async def list_all(context: Context,
                   limit: Annotated[int, Query(ge=1, le=200)] = 50,
                   cursor: Cursor = None) -> dict:
    """Campaigns, newest first, a page at a time (pass `next_cursor` back as `cursor`)."""
    docs, next_cursor = await paged(campaigns.list_campaigns(context.db, limit, cursor))
    return {"campaigns": [campaign_view(doc) for doc in docs],
            "next_cursor": next_cursor}


@router.get("/{campaign_id}", response_model=CampaignView,
            response_model_exclude_unset=True)
async def get_one(context: Context, campaign_id: str) -> dict:
    """Status, counts, throughput, ETA and the spread over nodes and workers."""
    campaign = await _found(context, campaign_id)
    in_flight = (await tasks_in_flight(campaign_id)
                 if campaign["status"] in ACTIVE else None)
    view = campaign_view(campaign, in_flight)
    view["funnel"] = await rollups.campaign_funnel(context.db, campaign_id)
    return view


@router.post("/{campaign_id}/launch", status_code=202, response_model=CampaignView,
             response_model_exclude_unset=True)
async def launch(context: Context, who: Who, campaign_id: str,
                 options: LaunchOptions | None = None) -> dict:
    """Start sending: W send tasks in flight, B per batch, R messages/s at most; from
    `start_at` on, when given."""
    campaign = await _found(context, campaign_id)
    start_at = options.start_at if options else None
    if start_at is not None and not (now() < start_at < now() + timedelta(days=366)):
        raise HTTPException(422, [{"field": "body.start_at",
                                   "message": "must be in the future, within a year"}])
    pages = audience_pages(await estimated_customers(context.db))
    launched = await campaigns.launch_campaign(
        context.db, campaign_id, options or LaunchOptions(), context.settings.send_connections,
        pages)
    if launched is None:
        raise HTTPException(409, f"campaign is {campaign['status']}, only a draft can launch")
    await _status_changed(context, campaign_id, running=True)
    await audit.record(context.db, who, "campaign.launch", campaign_id, launched["launch"])
    await publish(context.db, "campaign.started", {
        "campaign_id": campaign_id, "name": launched["name"], "launch": launched["launch"]},
        key=f"campaign.started:{campaign_id}")
    return campaign_view(launched)


async def _transition(context: AppContext, who: Principal, campaign_id: str,
                      allowed: tuple[str, ...], to: str, action: str) -> dict:
    campaign = await _found(context, campaign_id)
    if not await campaigns.change_status(context.db, campaign_id, allowed, to):
        raise HTTPException(409, f"campaign is {campaign['status']}; cannot {to[:-2]}")
    await _status_changed(context, campaign_id, running=to == CampaignStatus.RUNNING)
    await audit.record(context.db, who, f"campaign.{action}", campaign_id,
                       {"from": campaign["status"]})
    return campaign_view(await _found(context, campaign_id))


@router.post("/{campaign_id}/pause", response_model=CampaignView,
             response_model_exclude_unset=True)
async def pause(context: Context, who: Who, campaign_id: str) -> dict:
    """Stop sending: batches in flight stop after the messages on the wire."""
    return await _transition(context, who, campaign_id, (CampaignStatus.RUNNING,),
                             CampaignStatus.PAUSED, "pause")


@router.post("/{campaign_id}/resume", response_model=CampaignView,
             response_model_exclude_unset=True)
async def resume(context: Context, who: Who, campaign_id: str) -> dict:
    """Carry on from what is still pending."""
    return await _transition(context, who, campaign_id, (CampaignStatus.PAUSED,),
                             CampaignStatus.RUNNING, "resume")


@router.post("/{campaign_id}/cancel", response_model=CampaignView,
             response_model_exclude_unset=True)
async def cancel(context: Context, who: Who, campaign_id: str) -> dict:
    """Stop for good; what was not sent stays pending."""
    return await _transition(context, who, campaign_id, (*ACTIVE, CampaignStatus.DRAFT),
                             CampaignStatus.CANCELLED, "cancel")


@router.post("/{campaign_id}/retry-failed", status_code=202, response_model=RetryReply)
async def retry_failed(context: Context, who: Who, campaign_id: str) -> dict:
    """Send again, once, exactly the deliveries of a completed campaign whose last outcome
    was a failure (`dead` or `failed`); nobody who was sent or skipped."""
    campaign = await _found(context, campaign_id)
    started = await retry.retry_failed(context.db, campaign_id)
    if started is None:
        raise HTTPException(409, f"campaign is {campaign['status']}; only a completed "
                                 "campaign can retry its failed sends")
    if started["retrying"]:
        await _status_changed(context, campaign_id, running=True)
    await audit.record(context.db, who, "campaign.retry_failed", campaign_id, started)
    return started


async def _status_changed(context: AppContext, campaign_id: str, *, running: bool) -> None:
    await status_changed(campaign_id, context.runtime, running=running)
