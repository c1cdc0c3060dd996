"""The Dashboard deployment: the FastAPI ingress of the `operator-comms` application.

Routes: `/` the operator dashboard, `/api/*` the admin API, `/unsubscribe`, `/t/*`
(tracked opens and clicks), `/static`.
The customer chat (`/chat`) is the ChatBot's own application.
"""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve

from app.core.config import Settings
from deployments import options
from deployments.context import AppContext, current, install
from deployments.errors import DOCUMENTED_ERRORS, install_error_handlers
from deployments.limits import MAX_BODY_BYTES, LimitsFirst
from deployments.log_context import LogContext
from deployments.routes import (
    accounts,
    campaigns,
    chat,
    customers,
    jobs,
    journeys,
    live,
    marketing,
    messaging,
    pages,
    reports,
    signing_keys,
    signup,
    sms,
    suppressions,
    system,
    tracking,
    unsubscribe,
    webhooks,
)
from deployments.security import SecurityHeaders

api = FastAPI(title="operator-comms", version="0.1.0", docs_url="/api/docs",
              openapi_url="/api/openapi.json", telemetry=options.FASTAPI_TELEMETRY,
              max_body_size=MAX_BODY_BYTES)
API_ROUTERS = (system.router, accounts.auth_router, accounts.users_router,
               accounts.audit_router, customers.router, jobs.router, campaigns.router,
               chat.admin_router, marketing.router, journeys.router, live.router, reports.router,
               signup.router, sms.router, messaging.router, webhooks.router,
               signing_keys.router,
               suppressions.router)
for router in API_ROUTERS:
    api.include_router(router, prefix="/api", responses=DOCUMENTED_ERRORS)
for router in (unsubscribe.router, signup.confirm_router, tracking.router,
               pages.router):  # outside /api
    api.include_router(router, responses=DOCUMENTED_ERRORS)
pages.mount_static(api)
install_error_handlers(api)
api.add_middleware(SecurityHeaders)
api.add_middleware(LogContext)
api.add_middleware(LimitsFirst, limits=lambda: current().limits)  # before any body


@serve.deployment(**options.DASHBOARD)
@serve.ingress(api)
class Dashboard:
    async def __init__(self, settings: Settings):
        # Actors, indexes and migrations are the launcher's (`deployments.cluster`).
        install(await AppContext.start(settings, "dashboard"))
