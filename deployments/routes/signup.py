"""Signup routes: the email signup watcher's state, counts, recent messages, review queue
(signed in), and the public confirmation link of a signup (double opt-in): GET asks,
POST confirms."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse

from actors.signup_watcher import find_signup_watcher
from app.audience.customers import confirm_signup
from app.core.runtime import Runtime
from app.signup.models import Poked, SignupOverview
from app.signup.store import overview
from deployments.deps import Context, Signed
from deployments.routes.pages import link_customer, link_question, notice

router = APIRouter(prefix="/signup", tags=["signup"], dependencies=[Signed])
confirm_router = APIRouter(tags=["signup"])  # public: the link in the confirmation


async def _watcher_status() -> dict:
    watcher = await asyncio.to_thread(find_signup_watcher)
    if watcher is None:
        return {"running": False}
    try:
        return {"running": True, **await asyncio.wait_for(watcher.status.remote(), 5)}
    except Exception as exc:  # restarting, or its node is gone
        return {"running": False, "error": type(exc).__name__}


@router.get("", response_model=SignupOverview,
            response_model_exclude_unset=True)
async def signup_overview(context: Context,
                          limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict:
    """Watcher state, messages by kind, signups per campaign, recent messages, review queue."""
    body = await overview(context.db, context.settings, limit)
    body["watcher"] = await _watcher_status() if body["configured"] else {"running": False}
    return body


@router.post("/poll", status_code=202, response_model=Poked,
             response_model_exclude_unset=True)
async def poll_now(context: Context) -> dict:
    """Ask the watcher to read the mailbox now rather than at its next poll."""
    watcher = await asyncio.to_thread(find_signup_watcher) if context.settings.signup_enabled \
        else None
    if watcher is None:
        raise HTTPException(409, "no signup watcher: set COMMS_IMAP_HOST to enable it")
    await watcher.poke.remote()
    return {"poked": True}


@confirm_router.get("/signup/confirm/{token}", response_class=HTMLResponse)
async def confirm_page(context: Context, request: Request, token: str) -> HTMLResponse:
    """The link in a signup's confirmation email: asks (changes nothing)."""
    return await link_question(context, request, token, Runtime.customer_confirming,
                               "confirmation", title="Confirm your signup?",
                               button="Confirm", text="You will receive our offers by email.")


@confirm_router.post("/signup/confirm/{token}", response_class=HTMLResponse)
async def confirm(context: Context, request: Request, token: str) -> HTMLResponse:
    """Confirm the signup: the address receives campaigns from now on."""
    customer_id, refused = await link_customer(context, request, token,
                                               Runtime.customer_confirming, "confirmation")
    if refused is not None:
        return refused
    await confirm_signup(context.db, customer_id)  # a second click changes nothing
    return notice("Signup confirmed", "Thank you: you will receive our offers by email.")
