"""Preparing a running Ray for operator-comms, once per deploy: the local services
(when a service is embedded), the database's indexes, pending data migrations
(`app.migrations`) and signing keys (`app.core.signing_keys`), and the long-lived
actors (`actors.cluster`), replacing those that run with older settings or keys.
Idempotent: a second deploy finds it all in place. The launcher calls it, and so do
the applications' builders when `serve run` or `serve deploy` builds them.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import ray
from telegram.error import TelegramError

from actors.cluster import start_actors
from actors.local_services import local_services
from app import migrations
from app.campaigns.records import active_campaign_ids
from app.channels.telegram.api import set_webhook
from app.channels.telegram.channel import bot_login
from app.channels.telegram.updates import webhook_secret
from app.channels.whatsapp.api import subscribe_webhook
from app.channels.whatsapp.webhook import verify_token
from app.core import signing_keys
from app.core.config import Settings
from app.core.db import close_clients, database, ensure_indexes
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.signing_keys import KeyRing
from app.core.tokens import admin_token
from app.journeys import store
from app.journeys.definition import Journey
from app.marketing import journey as counter_offer
from deployments import options

log = logging.getLogger("operator_comms.launcher")


def _embedded(settings: Settings) -> bool:
    return (settings.embedded_mongodb or settings.embedded_smtp or settings.embedded_smsc
            or settings.embedded_telegram or settings.embedded_whatsapp)


def _run_async(work: Any) -> Any:
    """Run a coroutine function to its end from synchronous code, on a loop of its own
    (a Ray task that builds an application may already have one running)."""
    async def with_clients_closed() -> Any:
        try:
            return await work()
        finally:
            await close_clients()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, with_clients_closed()).result()


def prepare_cluster(settings: Settings) -> Runtime:
    """Once per deploy, on a running Ray: the local services (when embedded), the
    database's indexes and pending migrations, the journeys shipped as data (the
    counter-offer), and the long-lived actors. Idempotent."""
    resolved: Endpoints = (ray.get(local_services(settings).endpoints.remote())
                           if _embedded(settings) else Endpoints.configured(settings))

    async def database_work() -> tuple[KeyRing, list[str]]:
        db = database(resolved.mongodb_uri, settings.mongodb_db)
        await ensure_indexes(db)
        await migrations.run_pending(db)
        await store.ensure_published(db, counter_offer.KEY, Journey.model_validate(
            counter_offer.counter_offer_journey(settings)), counter_offer.MADE_BY)
        keys = await signing_keys.ensure(db, admin_token(settings))
        return keys, await active_campaign_ids(db)

    keys, running = _run_async(database_work)
    runtime = Runtime.build(settings, resolved, keys)
    start_actors(runtime, running)
    _run_async(lambda: set_telegram_webhook(runtime))
    return runtime


async def set_telegram_webhook(runtime: Runtime) -> None:
    """Have the Bot API post our bot's updates to the chat app's webhook, with a secret
    from the current link key (set again on every deploy and link-key rotation, so an
    old key can be retired). A
    Bot API that refuses (an unreachable URL, a bad token) is logged, not fatal: email,
    SMS and the web chat do not need it."""
    settings = runtime.settings
    url = f"{settings.public_url.rstrip('/')}{options.CHAT_PREFIX}/telegram/webhook"
    try:
        await set_webhook(bot_login(settings, runtime.endpoints), url,
                          webhook_secret(runtime.link_key))
    except TelegramError as exc:
        log.warning("Telegram: the webhook %s was not set (%s)", url, exc)


async def subscribe_whatsapp_webhook(runtime: Runtime) -> bool:
    """Point the Meta app's WhatsApp webhook at the chat app (`POST /{app-id}/
    subscriptions` with the app's token), with a verify token from the current link key;
    the Cloud API checks it at once through our handshake route, so this is done once
    the chat app answers (`subscribe_whatsapp_when_up`) and again on a link-key
    rotation. False (logged) if it was refused."""
    settings, endpoints = runtime.settings, runtime.endpoints
    url = f"{settings.public_url.rstrip('/')}{options.CHAT_PREFIX}/whatsapp/webhook"
    secret = settings.whatsapp_secret(endpoints.local_whatsapp_secret)
    try:
        await subscribe_webhook(endpoints.whatsapp_api or settings.whatsapp_api_url,
                                settings.whatsapp_api_version, settings.whatsapp_app_id,
                                f"{settings.whatsapp_app_id}|{secret}", url,
                                verify_token(runtime.link_key))
    except (RuntimeError, httpx.HTTPError) as exc:
        log.info("WhatsApp: the webhook %s was not subscribed (%s)", url,
                 str(exc).replace(secret, "<secret>") if secret else exc)
        return False
    return True


async def subscribe_whatsapp_when_up(runtime: Runtime, tries: int = 30,
                                     every_s: float = 2.0) -> None:
    """Subscribe the WhatsApp webhook once the chat app answers its handshake (a chat
    replica calls this after it starts; every replica may: it is idempotent)."""
    for _ in range(tries):
        await asyncio.sleep(every_s)
        if await subscribe_whatsapp_webhook(runtime):
            return
    log.warning("WhatsApp: the webhook was not subscribed after %d tries", tries)
