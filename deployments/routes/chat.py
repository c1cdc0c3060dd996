"""Customer chat routes under /chat: REST for clients that poll, WebSocket for live chat."""

from __future__ import annotations

from fastapi import APIRouter

from deployments.deps import Context

router = APIRouter(tags=["chat"])


@router.get("/api/health")
async def chat_health(context: Context) -> dict:
    """State of the ChatBot deployment behind this front."""
    return await context.chatbot.ping.remote()
