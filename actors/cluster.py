"""The cluster's long-lived actors, started once per deploy by the launcher
(`deployments.launcher`), never by a replica.

Each is detached and named (`actors.registry`), so starting them again finds the
running ones; a replica or route only looks them up.
"""

from __future__ import annotations

from actors.admin_jobs import admin_jobs
from actors.campaign_runner import start_runner
from actors.chat_hub import chat_hub
from actors.journeys import journey_shards
from actors.marketing import marketing_actor
from actors.rate_limiter import rate_limiter
from actors.send_dispatcher import send_dispatcher
from actors.signup_watcher import start_signup_watcher
from actors.sms_gateway import sms_gateway
from actors.webhook_sender import webhook_sender
from app.core.runtime import Runtime


def start_actors(runtime: Runtime, running_campaigns: list[str]) -> None:
    """Start every long-lived actor, begin warming the send workers, and give each
    campaign that was running when the cluster last stopped its runner again. Actors
    made with a runtime (settings, endpoints, keys) other than `runtime` are replaced,
    so a redeploy's changed SMTP password or a rotated key reaches them."""
    settings = runtime.settings
    rate_limiter(settings.actor_resources)
    send_dispatcher(settings.actor_resources).warm.remote(settings)
    chat_hub(settings.actor_resources)
    admin_jobs(settings)
    marketing_actor(runtime, replace_older=True)
    journey_shards(runtime, replace_older=True)
    webhook_sender(runtime, replace_older=True)
    sms_gateway(runtime, replace_older=True)
    if settings.signup_enabled:
        start_signup_watcher(runtime, replace_older=True)
    for campaign_id in running_campaigns:
        start_runner(campaign_id, runtime, replace_older=True)
