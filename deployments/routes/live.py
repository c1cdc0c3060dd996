"""Live views for the dashboard: a server-sent-events stream and the cluster's state.

`GET /api/live` streams a snapshot every second (campaigns, the selected campaign's
detail, marketing, chat), so the page updates without reloading; the browser reads
it with fetch(), keeping the admin token in a header. `GET /api/system` shows Ray's
nodes, actors and running tasks next to the health of MongoDB and SMTP.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import ray
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from actors.campaign_runner import tasks_in_flight
from actors.chat_hub import with_presence
from app.campaigns import records as campaigns
from app.campaigns.view import campaign_view
from app.chat.sessions import session_overview
from app.core import rollups
from app.core.models import SystemView
from app.core.statuses import ACTIVE
from deployments.deps import Context, Signed
from deployments.routes.marketing import marketing_now
from deployments.routes.system import checks

router = APIRouter(tags=["live"], dependencies=[Signed])
EVERY_S = 1.0


async def snapshot(context, campaign_id: str | None) -> dict:
    (docs, _), market, chat = await asyncio.gather(
        campaigns.list_campaigns(context.db, 20), marketing_now(context.db, 10),
        session_overview(context.db, 20))
    chat = await with_presence(chat, context.settings.actor_resources)
    view = {"campaigns": [campaign_view(doc) for doc in docs],
            "marketing": market, "chat": chat, "campaign": None}
    if campaign_id:
        doc = await campaigns.get_campaign(context.db, campaign_id)
        if doc is not None:
            in_flight = (await tasks_in_flight(campaign_id)
                         if doc["status"] in ACTIVE else None)
            view["campaign"] = campaign_view(doc, in_flight)
            view["campaign"]["funnel"] = await rollups.campaign_funnel(context.db,
                                                                       campaign_id)
    return view


@router.get("/live", response_class=StreamingResponse, responses={
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
          "description": "one `data:` line per second, each a JSON snapshot: the "
                         "campaigns, the selected campaign, marketing and chat"}})
async def live(request: Request, context: Context,
               campaign: Annotated[str | None, Query(max_length=64)] = None
               ) -> StreamingResponse:
    """Server-sent events: one JSON snapshot per second until the client goes away."""

    async def events():
        while not await request.is_disconnected():
            try:
                data = await snapshot(context, campaign)
                yield f"data: {json.dumps(data, default=str)}\n\n"
            except Exception as exc:  # a slow database: say so, keep the stream
                yield f"event: problem\ndata: {json.dumps({'error': type(exc).__name__})}\n\n"
            await asyncio.sleep(EVERY_S)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


def _cluster_state() -> dict:
    from ray.util.state import list_actors, list_tasks

    nodes = [{"id": n["NodeID"][:12], "ip": n["NodeManagerAddress"], "alive": n["Alive"],
              "cpus": n["Resources"].get("CPU", 0),
              "custom": {k: v for k, v in n["Resources"].items()
                         if k.startswith("comms_")}} for n in ray.nodes()]
    state: dict = {"nodes": nodes}
    try:
        actors = list_actors(filters=[("state", "=", "ALIVE")], limit=200)
        state["actors"] = [{"class": a.class_name, "name": a.name, "node": a.node_id[:12],
                            "pid": a.pid} for a in actors]
        tasks = list_tasks(filters=[("state", "=", "RUNNING")], limit=200)
        state["running_tasks"] = [{"name": t.name, "node": (t.node_id or "")[:12]}
                                  for t in tasks]
    except Exception as exc:  # the state API needs the Ray dashboard process
        state["state_api_error"] = f"{type(exc).__name__}: {exc}"[:200]
    return state


@router.get("/system", response_model=SystemView,
            response_model_exclude_unset=True)
async def system(context: Context) -> dict:
    """Ray nodes, actors and running tasks; MongoDB and SMTP health; the Ray dashboard."""
    cluster, (health, _) = await asyncio.gather(asyncio.to_thread(_cluster_state),
                                                checks(context))
    return {**cluster, "health": health,
            "ray_dashboard_port": context.settings.ray_dashboard_port,
            "local_mode": context.endpoints.local_sink}
