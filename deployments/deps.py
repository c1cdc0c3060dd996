"""FastAPI dependencies shared by the routers: the replica's context and admin auth."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.tokens import tokens_match
from deployments.context import AppContext, current

_bearer = HTTPBearer(auto_error=False)


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
