"""Preparing a running Ray for operator-comms, once per deploy: the local services
(when a service is embedded), the database's indexes, pending data migrations
(`app.migrations`) and signing keys (`app.core.signing_keys`), and the long-lived
actors (`actors.cluster`), replacing those that run with older settings or keys.
Idempotent: a second deploy finds it all in place. The launcher calls it, and so do
the applications' builders when `serve run` or `serve deploy` builds them.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray

from actors.cluster import start_actors
from actors.local_services import local_services
from app import migrations
from app.campaigns.records import active_campaign_ids
from app.core import signing_keys
from app.core.config import Settings
from app.core.db import close_clients, database, ensure_indexes
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.signing_keys import KeyRing
from app.core.tokens import admin_token


def _embedded(settings: Settings) -> bool:
    return settings.embedded_mongodb or settings.embedded_smtp or settings.embedded_smsc


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
    database's indexes and pending migrations, and the long-lived actors. Idempotent."""
    resolved: Endpoints = (ray.get(local_services(settings).endpoints.remote())
                           if _embedded(settings) else Endpoints.configured(settings))

    async def database_work() -> tuple[KeyRing, list[str]]:
        db = database(resolved.mongodb_uri, settings.mongodb_db)
        await ensure_indexes(db)
        await migrations.run_pending(db)
        keys = await signing_keys.ensure(db, admin_token(settings))
        return keys, await active_campaign_ids(db)

    keys, running = _run_async(database_work)
    runtime = Runtime.build(settings, resolved, keys)
    start_actors(runtime, running)
    return runtime
