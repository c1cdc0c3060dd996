"""Customer chat: the chat application's routes (page, REST, WebSocket) and the
operator's view of sessions (on the dashboard's `/api`).

The chat is its own Serve application under `/chat`, so a turn is one HTTP hop: the
proxy hands it to a ChatBot replica, which answers from `Conversations`. Clients that
send `x-session-id: <session id>` reach the same replica for every call of a session
(Serve's consistent-hash router), where the session is remembered; any replica can
answer any call.

Every call carries the session's token (REST: `Authorization: Bearer <token>`,
WebSocket: `?token=`); a wrong token looks exactly like a missing session (404).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import (
    APIRouter,
    Header,
    HTTPException,
    Query,
    WebSocket,
    WebSocketDisconnect,
)
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from actors.chat_hub import with_presence
from actors.metrics import ChatMetrics
from app.channels.telegram import linking
from app.chat import sessions as chat
from app.chat.conversations import Bell, Conversations
from app.chat.models import (
    ChatHealth,
    ClearedReply,
    InboxReply,
    NewSessionReply,
    SessionsOverview,
    TurnReply,
    VerifiedReply,
)
from deployments.context import current
from deployments.deps import Context, Cursor, Signed, paged
from deployments.limits import MAX_FRAME_CHARS, retry_after
from deployments.routes.pages import STATIC

router = APIRouter(tags=["chat"])
admin_router = APIRouter(prefix="/chat", tags=["chat"], dependencies=[Signed])
MAX_TEXT = 2000
ELSEWHERE_WAIT_S = 20.0
HELLO_S = 10.0  # for a socket's first frame, the session token


class NewSession(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=40)


class VerificationCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[0-9]{6}$", strict=True)


class SocketHello(BaseModel):
    """The first frame on a chat socket: the session token, and the last message seen."""

    token: str = Field(min_length=1, max_length=200, strict=True)
    after: int = Field(default=0, ge=0)


class CustomerText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_TEXT, strict=True)


def _token(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise HTTPException(401, "missing session token: send Authorization: Bearer <token>")
    return authorization[7:].strip()


SessionToken = Annotated[str | None, Header(alias="Authorization")]


def _talk() -> Conversations:
    return current().conversations


def _messages(docs: list[dict]) -> list[dict]:
    return [chat.public_message(doc) for doc in docs]


@router.get("/", include_in_schema=False)
async def chat_page() -> FileResponse:
    return FileResponse(STATIC / "chat.html")


@router.get("/api/health", response_model=ChatHealth,
            response_model_exclude_unset=True)
async def chat_health(context: Context) -> dict:
    """State of the ChatBot replica that answered."""
    await context.db.command("ping")
    return {"status": "up", "replica": context.conversations.where,
            "remembered_sessions": len(context.conversations.memory)}


@router.post("/api/sessions", status_code=201, response_model=NewSessionReply,
             response_model_exclude_unset=True)
async def new_session(body: NewSession | None = None) -> dict:
    """Start a conversation; an email or phone claimed here is linked once its code is
    verified (the reply is the same whoever the address belongs to)."""
    body = body or NewSession()
    session_id, token, claimed, docs = await _talk().create(body.email, body.phone)
    return {"session_id": session_id, "token": token, "messages": _messages(docs),
            **({"verification": "pending"} if claimed else {})}


@router.post("/api/sessions/{session_id}/verify", response_model=VerifiedReply)
async def verify_session(session_id: str, body: VerificationCode,
                         authorization: SessionToken = None) -> dict:
    """The code sent to the claimed address: links the session to its customer."""
    token = _token(authorization)
    try:
        verified = await _talk().verify(session_id, token, body.code)
    except chat.SessionNotFound:
        raise _not_found(session_id) from None
    if not verified:
        raise HTTPException(422, [{"field": "code",
                                   "message": "wrong or expired code, or too many tries"}])
    return {"verified": True}


@router.post("/api/sessions/{session_id}/messages", response_model=TurnReply,
             response_model_exclude_unset=True)
async def send_message(session_id: str, body: CustomerText,
                       authorization: SessionToken = None) -> dict:
    """The customer's answer; returns the stored turn (their message and the replies).
    Limited per session before the body is read (`deployments.bounds`)."""
    token = _token(authorization)
    try:
        docs = await _talk().turn(session_id, token, body.text)
        ChatMetrics.get().turns.inc(tags={"via": "rest"})
        return {"messages": _messages(docs)}
    except chat.SessionNotFound:
        raise _not_found(session_id) from None


class TelegramLinkReply(BaseModel):
    link: str = Field(description="https://t.me/<bot>?start=...: this customer's chat")


async def verified_customer(context: Context, session_id: str,
                            authorization: str | None, what: str) -> str:
    """The customer a session proved it is (its token checked; 404 for a session that
    is not this token's, 409 for one not verified: a typed address proves nothing).
    Read from the record: a verification taken by another replica is not in this
    one's memory."""
    try:
        await _talk().open(session_id, _token(authorization))
    except chat.SessionNotFound:
        raise _not_found(session_id) from None
    session = await context.db.chat_sessions.find_one({"_id": session_id},
                                                      {"customer_id": 1}) or {}
    customer_id = session.get("customer_id")
    if customer_id is None:
        raise HTTPException(409, f"verify the session first: {what} is for a verified "
                                 "customer")
    return customer_id


@router.post("/api/sessions/{session_id}/telegram-link", response_model=TelegramLinkReply,
             responses={409: {"description": "the session is not verified"}})
async def telegram_link(session_id: str, context: Context,
                        authorization: SessionToken = None) -> dict:
    """A verified customer's deep link to go on in Telegram (it ties their chat to them;
    `app.channels.telegram.linking`). A session not verified gets none: a typed address
    proves nothing."""
    customer_id = await verified_customer(context, session_id, authorization,
                                          "a Telegram link")
    runtime = await context.runtime_for("links")
    try:
        return {"link": linking.deep_link(context.settings.telegram_bot_username,
                                          customer_id, runtime.link_key)}
    except linking.TooLong:  # (ids this system makes fit; an imported legacy id may not)
        raise HTTPException(409, "this customer's id does not fit a Telegram link") from None


@router.get("/api/sessions/{session_id}/messages", response_model=InboxReply,
            response_model_exclude_unset=True)
async def read_messages(session_id: str, after: Annotated[int, Query(ge=0)] = 0,
                        authorization: SessionToken = None) -> dict:
    """The inbox after a cursor: bot, customer and marketing messages."""
    token = _token(authorization)
    try:
        docs = await _talk().read(session_id, token, after)
    except chat.SessionNotFound:
        raise _not_found(session_id) from None
    return {"messages": _messages(docs), "cursor": docs[-1]["seq"] if docs else after}


@router.delete("/api/sessions/{session_id}/messages", response_model=ClearedReply,
               response_model_exclude_unset=True)
async def clear_messages(session_id: str, authorization: SessionToken = None) -> dict:
    """Clear the conversation and start the flow again."""
    token = _token(authorization)
    try:
        return {"messages": _messages(await _talk().clear(session_id, token)),
                "cleared": True}
    except chat.SessionNotFound:
        raise _not_found(session_id) from None


@admin_router.get("/sessions", response_model=SessionsOverview,
                  response_model_exclude_unset=True)
async def sessions_overview(context: Context,
                            limit: Annotated[int, Query(ge=1, le=500)] = 100,
                            cursor: Cursor = None) -> dict:
    """Operator view: recent sessions (a page at a time: pass `next_cursor` back as
    `cursor`), where they are in the flow, whether a socket is open now (`online`),
    open handoffs."""
    return await with_presence(await paged(chat.session_overview(context.db, limit, cursor)),
                               context.settings.actor_resources)


@router.websocket("/ws/{session_id}")
async def chat_socket(websocket: WebSocket, session_id: str) -> None:
    """Customer messages in; replies and any later message for the session out.

    The session token never goes in the URL (where logs and proxies keep it): the
    client's first frame is `{"token": ..., "after": <seq>}`, within HELLO_S."""
    context = current()
    talk = context.conversations
    await websocket.accept()
    try:
        frame = await asyncio.wait_for(websocket.receive_text(), HELLO_S)
        if len(frame) > MAX_FRAME_CHARS:
            raise ValueError("frame too large")
        hello = SocketHello.model_validate_json(frame)
        await talk.open(session_id, hello.token)
    except WebSocketDisconnect:
        return
    except (TimeoutError, ValueError, KeyError, chat.SessionNotFound):
        # ValueError: not JSON, or not a hello (pydantic's ValidationError is one);
        # KeyError: a binary frame.
        await websocket.close(code=4401, reason="first send {\"token\": <session token>}")
        return
    token = hello.token
    cursor = hello.after
    lock = asyncio.Lock()

    async def push(docs: list[dict] | None = None, upto: int | None = None) -> None:
        """Send what came after the cursor (up to `upto` when known to be there): `docs`
        when they follow on from it, else what the database holds."""
        nonlocal cursor
        async with lock:
            if upto is not None and upto <= cursor:
                return  # sent already (the turn on this socket that rang)
            if docs is None or docs[0]["seq"] != cursor + 1:
                docs = await chat.messages_after(context.db, session_id, cursor)
            for doc in docs:
                if doc["seq"] > cursor:
                    await websocket.send_json({"type": "message",
                                               "message": chat.public_message(doc)})
                    cursor = doc["seq"]

    async def from_here(bell: Bell) -> None:
        while True:  # turns taken on this replica by other calls (REST, another tab)
            await push(upto=await bell.wait())

    async def from_elsewhere(bell: Bell) -> None:
        while True:  # other replicas and the marketing actor ring the hub
            latest = await talk.wait_elsewhere(session_id, bell, cursor, ELSEWHERE_WAIT_S)
            await push(upto=latest)

    async def from_customer() -> None:
        while True:
            frame = await websocket.receive_text()
            if len(frame) > MAX_FRAME_CHARS:
                await websocket.close(code=1009, reason="frame too large")
                return
            try:
                text = CustomerText.model_validate_json(frame).text
            except ValidationError as exc:
                error = exc.errors()[0]
                await websocket.send_json({"type": "error",
                                           "field": ".".join(map(str, error["loc"])) or "text",
                                           "message": error["msg"]})
                continue
            wait = context.limits.turns.check(session_id)
            if wait > 0:
                await websocket.send_json({
                    "type": "error", "field": "text", "retry_after": retry_after(wait),
                    "message": f"too many messages: try again in {retry_after(wait)} s"})
                continue
            # One turn at a time per socket: the customer's messages keep their order.
            docs = await talk.turn(session_id, token, text)
            ChatMetrics.get().turns.inc(tags={"via": "websocket"})
            await push(docs)

    async with talk.listening(session_id) as bell:
        await push()  # what the client missed while away
        tasks = [asyncio.create_task(from_here(bell)), asyncio.create_task(from_elsewhere(bell)),
                 asyncio.create_task(from_customer())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
                    await task


def _not_found(session_id: str) -> HTTPException:
    return HTTPException(404, f"no session {session_id!r} for this token")
