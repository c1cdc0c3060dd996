"""The ChatBot deployment: the FastAPI ingress of the chat application under `/chat`.

A turn is one HTTP hop (proxy -> replica) and, on a session the replica remembers,
one database write; see `app.chat.conversations`. Serve's consistent-hash router sends
the calls of a session that carry `x-session-id` to the same replica. Each replica
hands the events of its turns to the marketing actor and rings the chat hub for
sessions with a socket held elsewhere.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from ray import serve

from actors.chat_events import chat_consumers
from actors.chat_hub import HubDoorbell, chat_hub
from actors.sms_gateway import sms_gateway
from actors.webhook_sender import publish
from app.chat.conversations import Conversations
from app.chat.flow_engine import load_flow
from app.chat.verification import CodeCourier
from app.core.config import Settings
from deployments import options
from deployments.cluster import subscribe_whatsapp_when_up
from deployments.context import AppContext, current, install
from deployments.errors import DOCUMENTED_ERRORS, install_error_handlers
from deployments.limits import MAX_BODY_BYTES, LimitsFirst
from deployments.log_context import LogContext
from deployments.routes import chat, push, telegram, whatsapp
from deployments.security import SecurityHeaders

chat_api = FastAPI(title="operator-comms chat", version="0.1.0", docs_url="/api/docs",
                   openapi_url="/api/openapi.json", telemetry=options.FASTAPI_TELEMETRY,
                   max_body_size=MAX_BODY_BYTES)
chat_api.include_router(chat.router, responses=DOCUMENTED_ERRORS)
chat_api.include_router(telegram.router, responses=DOCUMENTED_ERRORS)
chat_api.include_router(whatsapp.router, responses=DOCUMENTED_ERRORS)
chat_api.include_router(push.router, responses=DOCUMENTED_ERRORS)
install_error_handlers(chat_api)
chat_api.add_middleware(SecurityHeaders)
chat_api.add_middleware(LogContext)
chat_api.add_middleware(LimitsFirst, limits=lambda: current().limits)  # before any body


@serve.deployment(**options.CHATBOT)
@serve.ingress(chat_api)
class ChatBot:
    async def __init__(self, settings: Settings):
        context = await AppContext.start(settings, "chatbot")
        hub = chat_hub(settings.actor_resources)
        context.conversations = Conversations(
            context.db, load_flow(), where=serve.get_replica_context().replica_id.unique_id,
            consumers={
                **chat_consumers(context.runtime),
                "handoff_requested": lambda event: publish(context.db, "handoff.requested", {
                    "session_id": event["session_id"], "customer_id": event.get("customer_id"),
                    "at": event["created_at"]}, key=f"handoff:{event['_id']}"),
            },
            doorbell=HubDoorbell(hub),
            send_code=CodeCourier(context.runtime, lambda texts: sms_gateway(
                context.runtime).send_texts.remote(texts)))
        install(context)
        self.subscribing = asyncio.get_running_loop().create_task(
            subscribe_whatsapp_when_up(context.runtime))  # (its handshake needs us up)
        self.conversations = context.conversations
        self.background = self.conversations.run_in_background()

    async def __del__(self) -> None:
        """Graceful shutdown: write what the last second collected (summaries, the
        chat roll-up's moves) instead of leaving it to the next reconcile."""
        if hasattr(self, "conversations"):
            await self.conversations.flush()
