"""Customer chat under /chat: REST for clients that poll, a WebSocket for live chat.

Every call carries the session's token (REST: `Authorization: Bearer <token>`,
WebSocket: `?token=`); a wrong token looks exactly like a missing session (404).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.chat_hub import chat_hub
from app import chat
from deployments.context import current
from deployments.deps import Admin, Context

router = APIRouter(tags=["chat"])
admin_router = APIRouter(prefix="/chat", tags=["chat"], dependencies=[Admin])
MAX_TEXT = 2000


class NewSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)


class CustomerText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_TEXT, strict=True)


def _token(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(401, "missing session token: send Authorization: Bearer <token>")
    return authorization[7:].strip()


def _found(result: dict | None, session_id: str) -> dict:
    if result is None:
        raise HTTPException(404, f"no session {session_id!r} for this token")
    return result


SessionToken = Annotated[str | None, Header(alias="Authorization")]


@router.get("/api/health")
async def chat_health(context: Context) -> dict:
    """State of the ChatBot deployment behind this front."""
    return await context.chatbot.ping.remote()


@router.post("/api/sessions", status_code=201)
async def new_session(context: Context, body: NewSession | None = None) -> dict:
    """Start a conversation, optionally linked to a customer by email or phone."""
    body = body or NewSession()
    return await context.chatbot.create_session.remote(body.email, body.phone)


@router.post("/api/sessions/{session_id}/messages")
async def send_message(context: Context, session_id: str, body: CustomerText,
                       authorization: SessionToken = None) -> dict:
    """The customer's answer; returns the stored turn (their message and the replies)."""
    result = await context.chatbot.send.remote(session_id, _token(authorization), body.text)
    return _found(result, session_id)


@router.get("/api/sessions/{session_id}/messages")
async def read_messages(context: Context, session_id: str,
                        after: Annotated[int, Query(ge=0)] = 0,
                        authorization: SessionToken = None) -> dict:
    """The inbox after a cursor: bot, customer and marketing messages."""
    result = await context.chatbot.messages.remote(session_id, _token(authorization), after)
    return _found(result, session_id)


@router.delete("/api/sessions/{session_id}/messages")
async def clear_messages(context: Context, session_id: str,
                         authorization: SessionToken = None) -> dict:
    """Clear the conversation and start the flow again."""
    return _found(await context.chatbot.clear.remote(session_id, _token(authorization)),
                  session_id)


@admin_router.get("/sessions")
async def sessions_overview(context: Context,
                            limit: Annotated[int, Query(ge=1, le=500)] = 100) -> dict:
    """Operator view: recent sessions, where they are in the flow, open handoffs."""
    return await chat.session_overview(context.db, limit)


@router.websocket("/ws/{session_id}")
async def chat_socket(websocket: WebSocket, session_id: str, token: str = "",
                      after: int = 0) -> None:
    """Customer messages in; replies and any later message for the session out."""
    context = current()
    try:
        await chat.get_session(context.db, session_id, token)
    except chat.SessionNotFound:
        await websocket.close(code=4404, reason="no such session for this token")
        return
    await websocket.accept()
    hub = chat_hub(context.settings.actor_resources)
    cursor = max(0, after)
    lock = asyncio.Lock()

    async def push_new() -> None:
        nonlocal cursor
        async with lock:
            for doc in await chat.messages_after(context.db, session_id, cursor):
                await websocket.send_json({"type": "message",
                                           "message": chat.public_message(doc)})
                cursor = doc["seq"]

    async def from_hub() -> None:
        while True:
            await hub.wait.remote(session_id, cursor, 20.0)
            await push_new()

    async def from_customer() -> None:
        while True:
            raw = await websocket.receive_json()
            try:
                text = CustomerText.model_validate(raw).text
            except ValidationError as exc:
                error = exc.errors()[0]
                await websocket.send_json({"type": "error",
                                           "field": ".".join(map(str, error["loc"])) or "text",
                                           "message": error["msg"]})
                continue
            # One turn at a time per socket: the customer's messages keep their order.
            await context.chatbot.send.remote(session_id, token, text)
            await push_new()

    await push_new()  # what the client missed while away
    tasks = [asyncio.create_task(from_hub()), asyncio.create_task(from_customer())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                await task
