"""What the chat's events set going, for every place a conversation is held (the chat
app's replicas, the SMS gateway): a refusal enters the counter-offer journey; an
accepted counter-offer is converted by the marketing actor and ends that journey; the
bot's own upgrade is converted by the marketing actor.

Each consumer is awaited by the conversation before the event is marked delivered
(`app.chat.conversations`): an event whose consumer failed is given again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from actors import registry
from actors.journeys import take_events
from actors.marketing import marketing_actor
from actors.webhook_sender import publish
from app.core.runtime import Runtime
from app.journeys.enrollments import member_of
from app.journeys.sending import sender_of
from app.marketing.journey import ACCEPTED, REFUSED
from app.observability import tracing

Consumer = Callable[[dict], Awaitable[Any]]


def chat_consumers(runtime: Runtime) -> dict[str, Consumer]:
    """The consumers of the chat's marketing events."""
    db = runtime.database
    marketing_actor(runtime)  # (started by the launcher; made if it is not)
    marketing = registry.Named(registry.MARKETING)  # followed when it is replaced
    shards = runtime.settings.journey_shards

    async def refused(event: dict) -> None:
        with tracing.span("marketing.refusal", None, session=event.get("session_id")):
            await take_events(db(), [{
                "_id": event["_id"], "type": REFUSED, "at": event.get("created_at"),
                "customer_id": member_of(event.get("customer_id"), event["session_id"]),
                "session_id": event["session_id"]}], shards, trace=tracing.carrier())
        await publish(db(), "offer.refused", {
            "session_id": event["session_id"], "customer_id": event.get("customer_id")},
            key=f"offer.refused:{event['_id']}")

    async def accepted(event: dict) -> None:
        taken = await marketing().handle_acceptance.remote(event)
        enrollment_id, member = sender_of(taken.get("journey_send") or "")
        if member is not None:  # the journey that made the offer ends, converted
            await take_events(db(), [{
                "_id": f"accepted:{event['_id']}", "type": ACCEPTED,
                "customer_id": member, "enrollment_id": enrollment_id,
                "at": event.get("created_at")}], shards)

    async def upgraded(event: dict) -> None:
        await marketing().handle_upgrade.remote(event)

    return {REFUSED: refused, ACCEPTED: accepted, "offer_accepted": upgraded}
