"""Account routes: sign in for a short-lived token, who am I, users and their API keys
(admins only), and the audit log of every change (any signed-in role reads it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from app.access import accounts, audit
from app.access.models import (
    ApiKeyReply,
    AuditList,
    Me,
    NewApiKey,
    NewUser,
    SignIn,
    TokenReply,
    UserChange,
    UserList,
    UserView,
)
from app.core.signing_keys import SIGN_IN
from deployments.deps import AdminOnly, Context, Cursor, Signed, Who, found, paged

auth_router = APIRouter(prefix="/auth", tags=["accounts"])
users_router = APIRouter(prefix="/users", tags=["accounts"], dependencies=[AdminOnly])
audit_router = APIRouter(prefix="/audit", tags=["accounts"], dependencies=[Signed])


@auth_router.post("/token", response_model=TokenReply)
async def sign_in(context: Context, body: SignIn) -> dict:
    """User name and password for a token that lasts an hour (limited per address, before
    the body is read: `deployments.bounds`)."""
    principal = await accounts.check_password(context.db, body.username, body.password)
    if principal is None:
        raise HTTPException(401, "wrong user name or password",
                            headers={"WWW-Authenticate": "Bearer"})
    runtime = await context.runtime_for(SIGN_IN)
    token, expires = accounts.issue_token(principal, runtime.keys.signing(SIGN_IN))
    return {"token": token, "token_type": "bearer", "expires_at": expires.isoformat(),
            "username": principal.name, "role": principal.role}


@auth_router.get("/me", response_model=Me, dependencies=[Signed])
async def me(who: Who) -> dict:
    """Who the token names, and their role."""
    return {"username": who.name, "role": who.role, "via": who.via}


async def _user(context: Context, username: str) -> dict:
    return await found(accounts.get_user(context.db, username), f"user {username!r}")


@users_router.get("", response_model=UserList)
async def list_users(context: Context) -> dict:
    return {"users": [accounts.user_view(doc) for doc in await accounts.list_users(context.db)]}


@users_router.post("", response_model=UserView, status_code=201)
async def create_user(context: Context, who: Who, body: NewUser) -> dict:
    """A user with a role: viewer, operator or admin. The password is kept as an Argon2
    hash only."""
    try:
        doc = await accounts.create_user(context.db, body.username, body.password, body.role,
                                         who)
    except accounts.AccountProblem as exc:
        raise HTTPException(409, [{"field": exc.field, "message": str(exc)}]) from None
    await audit.record(context.db, who, "user.create", body.username, {"role": body.role})
    return accounts.user_view(doc)


@users_router.patch("/{username}", response_model=UserView)
async def change_user(context: Context, who: Who, username: str, body: UserChange) -> dict:
    """Change a role, reset a password, disable or enable (a disabled user's API keys stop
    at once; a sign-in token lasts until it expires)."""
    await _user(context, username)
    doc = await accounts.update_user(context.db, username, role=body.role,
                                     password=body.password, disabled=body.disabled)
    changed = body.model_dump(exclude_none=True, exclude={"password"})
    if body.password is not None:
        changed["password"] = "reset"
    await audit.record(context.db, who, "user.change", username, changed)
    return accounts.user_view(doc)


@users_router.post("/{username}/api-keys", response_model=ApiKeyReply, status_code=201)
async def create_api_key(context: Context, who: Who, username: str,
                         body: NewApiKey | None = None) -> dict:
    """A key for scripts, acting as this user with their role; shown only in this reply."""
    label = body.label if body else None
    made = await accounts.create_api_key(context.db, username, label)
    if made is None:
        raise HTTPException(404, f"no user {username!r}")
    key, record = made
    await audit.record(context.db, who, "api_key.create", username,
                       {"key_id": record["id"], "label": label})
    return {"key": key, "id": record["id"], "label": label,
            "created_at": record["created_at"].isoformat()}


@users_router.delete("/{username}/api-keys/{key_id}", status_code=204)
async def revoke_api_key(context: Context, who: Who, username: str, key_id: str) -> None:
    """Revoke a key: it stops working at once."""
    if not await accounts.revoke_api_key(context.db, username, key_id):
        raise HTTPException(404, f"no API key {key_id!r} for {username!r}")
    await audit.record(context.db, who, "api_key.revoke", username, {"key_id": key_id})


@audit_router.get("", response_model=AuditList)
async def audit_log(context: Context, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                    cursor: Cursor = None) -> dict:
    """Every change, newest first: who (user and role), what, on what, when."""
    entries, next_cursor = await paged(audit.entries(context.db, limit, cursor))
    return {"entries": entries, "next_cursor": next_cursor}
