"""API models of access: what clients send (validated, with limits) and what we return."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    StringConstraints,
)

from app.access.accounts import Role
from app.core.models import Any_, Reply, Strict

Username = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{2,63}$")]


Password = Annotated[str, StringConstraints(min_length=12, max_length=256)]


class SignIn(Strict):
    username: str = Field(max_length=64)
    password: str = Field(max_length=256)


class TokenReply(Reply):
    token: str = Field(description="send as Authorization: Bearer <token>")
    token_type: str
    expires_at: str
    username: str
    role: str


class Me(Reply):
    username: str
    role: str
    via: str = Field(description="password, api-key or admin-token")


class NewUser(Strict):
    username: Username
    password: Password
    role: Role


class UserChange(Strict):
    role: Role | None = None
    password: Password | None = None
    disabled: bool | None = None


class UserView(Reply):
    username: str
    role: str
    disabled: bool
    created_at: str
    created_by: str | None
    api_keys: list[Any_] = Field(description="id, label and creation time; never the key")


class UserList(Reply):
    users: list[UserView]


class NewApiKey(Strict):
    label: str | None = Field(default=None, max_length=100)


class ApiKeyReply(Reply):
    key: str = Field(description="shown once: only a hash of it is kept")
    id: str
    label: str | None
    created_at: str


class AuditEntry(Reply):
    id: str
    at: str
    who: str
    role: str
    via: str
    action: str
    target: str | None
    detail: Any_


class AuditList(Reply):
    entries: list[AuditEntry]
    next_cursor: str | None


class NewSigningKey(Strict):
    purpose: Literal["links", "sign-in"] = Field(description=(
        "links: unsubscribe, signup-confirmation and tracking links; sign-in: operator "
        "tokens"))


class SigningKeyView(Reply):
    kid: str
    purpose: str
    current: bool = Field(description="this key signs new tokens of its purpose")
    created_at: str
    retired_at: str | None = Field(description="set: it verifies nothing any more")
    verify_only: bool = Field(description="the legacy key: it verifies, never signs")


class SigningKeyList(Reply):
    keys: list[SigningKeyView]
