"""The Dashboard deployment: the application's FastAPI ingress.

Routes: `/` the operator dashboard, `/api/*` the admin API, `/chat/*` the customer
chat (page, REST and WebSocket; conversation turns go to the ChatBot deployment).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError
from ray import serve
from ray.serve.handle import DeploymentHandle

from actors.marketing import marketing_actor
from actors.rate_limiter import rate_limiter
from actors.signup_watcher import start_signup_watcher
from app.campaigns import active_campaign_ids
from app.config import Settings
from app.tokens import unsubscribe_secret
from deployments import options
from deployments.context import AppContext, install
from deployments.routes import (
    campaigns,
    chat,
    customers,
    live,
    marketing,
    pages,
    reports,
    signup,
    system,
    unsubscribe,
)

api = FastAPI(title="operator-comms", version="0.1.0", docs_url="/api/docs",
              openapi_url="/api/openapi.json")
api.include_router(system.router, prefix="/api")
api.include_router(customers.router, prefix="/api")
api.include_router(campaigns.router, prefix="/api")
api.include_router(unsubscribe.router)
api.include_router(chat.admin_router, prefix="/api")
api.include_router(marketing.router, prefix="/api")
api.include_router(live.router, prefix="/api")
api.include_router(reports.router, prefix="/api")
api.include_router(signup.router, prefix="/api")
api.include_router(chat.router, prefix="/chat")
api.include_router(pages.router)


@api.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Name each bad field; never echo the submitted values back (they may be secrets).
    errors = [{"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
              for err in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


@api.exception_handler(PyMongoError)
async def _database_down(request: Request, exc: PyMongoError) -> JSONResponse:
    return JSONResponse({"detail": f"database unavailable: {type(exc).__name__}"},
                        status_code=503)


@serve.deployment(**options.DASHBOARD)
@serve.ingress(api)
class Dashboard:
    async def __init__(self, settings: Settings, chatbot: DeploymentHandle):
        context = await AppContext.start(settings)
        context.chatbot = chatbot
        install(context)
        rate_limiter(settings.actor_resources)
        secret = unsubscribe_secret(context.admin_token)
        marketing_actor(settings, context.endpoints, secret)
        if settings.signup_enabled:
            start_signup_watcher(settings, context.endpoints, secret)
        # Campaigns that were running when the cluster last stopped carry on.
        for campaign_id in await active_campaign_ids(context.db):
            campaigns.ensure_runner(context, campaign_id)
