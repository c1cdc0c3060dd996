"""FastAPI dependencies shared by the routers: the replica's context and admin auth."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, TypeVar

from fastapi import Depends, HTTPException, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.paging import BadCursor
from app.tokens import tokens_match
from deployments.context import AppContext, current

_bearer = HTTPBearer(auto_error=False)
T = TypeVar("T")


def get_context() -> AppContext:
    return current()


Context = Annotated[AppContext, Depends(get_context)]


def require_admin(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing admin token: send Authorization: Bearer <token>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not tokens_match(credentials.credentials, context.admin_token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong admin token")


Admin = Depends(require_admin)


# A list's page cursor (`app.paging`): what the previous page returned as `next_cursor`.
Cursor = Annotated[str | None, Query(max_length=500, description=(
    "the `next_cursor` of the previous page; omit for the first page"))]


async def paged(listing: Awaitable[T]) -> T:
    """Await a paged listing; a cursor it did not hand out is a 422 naming the field."""
    try:
        return await listing
    except BadCursor as exc:
        raise HTTPException(422, [{"field": "query.cursor", "message": str(exc)}]) from None
