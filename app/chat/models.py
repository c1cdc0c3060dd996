"""API models of chat: what clients send (validated, with limits) and what we return."""

from __future__ import annotations

from typing import Any

from pydantic import (
    Field,
)

from app.core.models import Any_, Reply


class ChatMessage(Reply):
    seq: int
    role: str
    text: str
    options: list[Any]
    node: str | None
    kind: str
    offer: Any_ | None
    created_at: str


class ChatHealth(Reply):
    status: str
    replica: str
    remembered_sessions: int


class NewSessionReply(Reply):
    session_id: str
    token: str = Field(description="send as Authorization: Bearer <token>")
    verification: str | None = Field(
        default=None, description="'pending' when an email or phone was claimed: if it is "
        "on file, a code went to it; POST it to /api/sessions/{id}/verify to link the "
        "session. The same answer for any address.")
    messages: list[ChatMessage]


class VerifiedReply(Reply):
    verified: bool


class TurnReply(Reply):
    messages: list[ChatMessage]


class InboxReply(Reply):
    messages: list[ChatMessage]
    cursor: int = Field(description="pass as `after` to read only what is newer")


class ClearedReply(Reply):
    messages: list[ChatMessage]
    cleared: bool


class SessionsOverview(Reply):
    sessions: list[Any_] = Field(description="most recently active first")
    next_cursor: str | None = Field(description="pass as `cursor` for the next page of "
                                                "sessions; null on the last page")
    open_handoffs: list[Any_]
    total_sessions: int
