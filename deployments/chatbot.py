"""The ChatBot deployment: conversation turns, called by the web front through a handle.

Serve gives HTTP and WebSockets to an application's ingress only, so the customer's
socket is held by the Dashboard ingress (under /chat) and every turn is handled here,
where it scales on its own. Each replica also hands events from the chat's outbox in
MongoDB to their consumers, retrying until a consumer takes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from ray import serve

from actors.chat_hub import chat_hub
from actors.marketing import marketing_actor
from app import chat
from app.config import Settings
from app.flow_engine import load_flow
from app.tokens import unsubscribe_secret
from deployments import options
from deployments.context import AppContext

log = logging.getLogger("operator_comms.chatbot")
OUTBOX_EVERY_S = 0.25
Consumer = Callable[[dict], Awaitable[None]]


@serve.deployment(**options.CHATBOT)
class ChatBot:
    async def __init__(self, settings: Settings):
        self.context = await AppContext.start(settings)
        self.flow = load_flow()
        self.hub = chat_hub(settings.actor_resources)
        self.where = serve.get_replica_context().replica_id.unique_id
        marketing = marketing_actor(settings, self.context.endpoints,
                                    unsubscribe_secret(self.context.admin_token))
        self.consumers: dict[str, Consumer] = {
            "offer_refused": lambda event: marketing.handle_refusal.remote(event),
            "counter_offer_accepted": lambda event: marketing.handle_acceptance.remote(event),
            "offer_accepted": lambda event: marketing.handle_upgrade.remote(event),
        }
        self.outbox = asyncio.get_running_loop().create_task(self._hand_on_events())

    @property
    def db(self):
        return self.context.db

    async def create_session(self, email: str | None, phone: str | None) -> dict:
        session, token, docs = await chat.create_session(self.db, self.flow, email=email,
                                                         phone=phone, where=self.where)
        await self._ring(session["_id"], docs)
        return {"session_id": session["_id"], "token": token,
                "customer_linked": session["customer_id"] is not None,
                "messages": [chat.public_message(d) for d in docs]}

    async def send(self, session_id: str, token: str, text: str) -> dict | None:
        try:
            session = await chat.get_session(self.db, session_id, token)
        except chat.SessionNotFound:
            return None
        docs = await chat.take_turn(self.db, self.flow, session, text, where=self.where)
        await self._ring(session_id, docs)
        return {"messages": [chat.public_message(d) for d in docs]}

    async def messages(self, session_id: str, token: str, after: int) -> dict | None:
        try:
            await chat.get_session(self.db, session_id, token)
        except chat.SessionNotFound:
            return None
        docs = await chat.messages_after(self.db, session_id, after)
        return {"messages": [chat.public_message(d) for d in docs],
                "cursor": docs[-1]["seq"] if docs else after}

    async def clear(self, session_id: str, token: str) -> dict | None:
        try:
            session = await chat.get_session(self.db, session_id, token)
        except chat.SessionNotFound:
            return None
        docs = await chat.clear_conversation(self.db, self.flow, session)
        await self._ring(session_id, docs)
        return {"messages": [chat.public_message(d) for d in docs], "cleared": True}

    async def ping(self) -> dict:
        await self.db.command("ping")
        return {"status": "up", "replica": self.where}

    async def _ring(self, session_id: str, docs: list[dict]) -> None:
        if docs:
            await self.hub.publish.remote(session_id, docs[-1]["seq"])

    async def _hand_on_events(self) -> None:
        """Copy turn events to `events` and give each to its consumer until one takes it."""
        while True:
            try:
                for event in await chat.collect_events(self.db):
                    consumer = self.consumers.get(event["type"])
                    if consumer is not None:
                        await consumer(event)  # raises while the consumer is down: retried
                    await chat.mark_delivered(self.db, event["_id"])
            except Exception as exc:
                log.warning("event outbox: %s; will retry", exc)
            await asyncio.sleep(OUTBOX_EVERY_S)
