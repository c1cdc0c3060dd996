"""Signing-key routes (admins only): list the keys, add one that signs from now on, and
retire an old one (`app.core.signing_keys`). Never shows a secret.

Adding a link key replaces the long-lived actors and running campaigns' runners, so
they sign with it at once, and gives the Telegram webhook the secret it derives; the
older keys keep verifying until retired. Other replicas pick the new key up at their
next check (`deployments.context`).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, HTTPException

from actors.cluster import start_actors
from app.access import audit
from app.access.models import NewSigningKey, SigningKeyList, SigningKeyView
from app.campaigns.records import active_campaign_ids
from app.core import signing_keys
from deployments.cluster import set_telegram_webhook, subscribe_whatsapp_webhook
from deployments.deps import AdminOnly, Context, Who

router = APIRouter(prefix="/signing-keys", tags=["accounts"], dependencies=[AdminOnly])


@router.get("", response_model=SigningKeyList)
async def list_keys(context: Context) -> dict:
    """Every key: its id, purpose, whether it signs now, when it was made and retired."""
    return {"keys": (await signing_keys.load(context.db)).views()}


@router.post("", response_model=SigningKeyView, status_code=201)
async def rotate(context: Context, who: Who, body: NewSigningKey) -> dict:
    """A new key for `purpose` that signs from now on (the old ones keep verifying)."""
    key = await signing_keys.rotate(context.db, body.purpose)
    await audit.record(context.db, who, "signing_key.rotate", key.kid,
                       {"purpose": key.purpose})
    context.keys_loaded = float("-inf")  # reload now
    runtime = await context.runtime_for(key.purpose)
    if key.purpose == signing_keys.LINKS:  # actors sign links; sign-in is the replicas'
        running = await active_campaign_ids(context.db)
        await asyncio.to_thread(start_actors, runtime, running)
        await set_telegram_webhook(runtime)  # its secret comes from the link key
        await subscribe_whatsapp_webhook(runtime)  # and the verify token
    return key.view(current=True)


@router.post("/{purpose}/{kid}/retire", response_model=SigningKeyView)
async def retire(context: Context, who: Who, purpose: str, kid: str) -> dict:
    """Retire a key: the tokens it signed stop working (on every replica within
    seconds). The key that signs now cannot be retired: add a new one first."""
    try:
        key = await signing_keys.retire(context.db, purpose, kid)
    except signing_keys.KeyProblem as exc:
        raise HTTPException(409, [{"field": exc.field, "message": str(exc)}]) from None
    if key is None:
        raise HTTPException(404, f"no {purpose} key {kid!r}")
    await audit.record(context.db, who, "signing_key.retire", kid, {"purpose": purpose})
    context.keys_loaded = float("-inf")
    return key.view(current=False)
