"""The ChatBot deployment: conversation logic, called by the web front through a handle.

Serve gives HTTP and WebSockets to an application's ingress only, so the customer's
socket is held by the Dashboard ingress (under /chat) and every turn of the
conversation is handled here, where it can scale on its own.
"""

from __future__ import annotations

from ray import serve

from app.config import Settings
from deployments import options
from deployments.context import AppContext


@serve.deployment(**options.CHATBOT)
class ChatBot:
    async def __init__(self, settings: Settings):
        self.context = await AppContext.start(settings)

    async def ping(self) -> dict:
        await self.context.db.command("ping")
        return {"status": "up"}
