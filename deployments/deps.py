"""FastAPI dependencies shared by the routers: the replica's context, who is calling
and what their role allows (`app.access.accounts`), and list paging."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.access import accounts
from app.access.accounts import Principal, Role
from app.core.paging import BadCursor
from app.core.signing_keys import SIGN_IN
from app.core.tokens import tokens_match
from deployments.context import AppContext, current

_bearer = HTTPBearer(auto_error=False)
T = TypeVar("T")


def get_context() -> AppContext:
    return current()


Context = Annotated[AppContext, Depends(get_context)]


async def authenticate(context: AppContext, credentials: HTTPAuthorizationCredentials | None
                       ) -> Principal:
    """Who the bearer token names: the bootstrap admin token, an API key, or a sign-in
    token; 401 when there is none or it is not valid (expired, forged, revoked)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "not signed in: send Authorization: Bearer <token or API key>",
                            headers={"WWW-Authenticate": "Bearer"})
    given = credentials.credentials
    if tokens_match(given, context.admin_token):
        if context.settings.admin_token_enabled or not await accounts.an_admin_exists(
                context.db):
            return accounts.BOOTSTRAP
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "the admin token is disabled (COMMS_ADMIN_TOKEN_ENABLED=false): "
                            "sign in as a user", headers={"WWW-Authenticate": "Bearer"})
    if given.startswith(accounts.KEY_PREFIX):
        principal = await accounts.check_api_key(context.db, given)
    else:
        runtime = await context.runtime_for(SIGN_IN, accounts.token_kid(given))
        principal = accounts.read_token(given, runtime.keys)
    if principal is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "not signed in: the token or API key is not valid (or expired)",
                            headers={"WWW-Authenticate": "Bearer"})
    return principal


class Access:
    """A router's access rule: reads (GET) need `read`, changes need `write`.

    A class, not a closure: Serve pickles the app, and a closure's string annotations
    (this module uses postponed annotations) would not resolve after unpickling, so
    FastAPI would read `request` as a query parameter."""

    def __init__(self, write: Role = Role.OPERATOR, read: Role = Role.VIEWER):
        self.write, self.read = write, read

    async def __call__(self, request: Request, context: Context, credentials: Annotated[
            HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
        principal = await authenticate(context, credentials)
        needed = self.read if request.method in ("GET", "HEAD") else self.write
        if not accounts.allows(principal.role, needed):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"{principal.role} {principal.name!r} may not "
                                f"{request.method} {request.url.path}: needs {needed}")
        request.state.principal = principal
        return principal


def _principal(request: Request) -> Principal:
    return request.state.principal


# The signed-in caller, once the router's `access` rule let them in.
Who = Annotated[Principal, Depends(_principal)]
Signed = Depends(Access())  # viewers read, operators change
AdminOnly = Depends(Access(write=Role.ADMIN, read=Role.ADMIN))
AdminWrites = Depends(Access(write=Role.ADMIN))  # viewers read, admins change


# A list's page cursor (`app.core.paging`): what the previous page returned as `next_cursor`.
Cursor = Annotated[str | None, Query(max_length=500, description=(
    "the `next_cursor` of the previous page; omit for the first page"))]


async def found(lookup: Awaitable[T | None], what: str) -> T:
    """Await a lookup by id; nothing found is a 404 naming what was asked for."""
    doc = await lookup
    if doc is None:
        raise HTTPException(404, f"no {what}")
    return doc


async def paged(listing: Awaitable[T]) -> T:
    """Await a paged listing; a cursor it did not hand out is a 422 naming the field."""
    try:
        return await listing
    except BadCursor as exc:
        raise HTTPException(422, [{"field": "query.cursor", "message": str(exc)}]) from None
