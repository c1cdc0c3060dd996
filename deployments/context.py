"""What a replica holds once started: the runtime, its database, the admin token."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from actors.local_services import local_services, resolve_endpoints
from app.access.accounts import signing_key
from app.audience.customers import backfill_buckets
from app.campaigns.records import rename_launch_options
from app.core.config import Endpoints, Settings
from app.core.db import ensure_indexes
from app.core.runtime import Runtime
from app.core.tokens import admin_token
from app.observability import telemetry
from app.signup.store import count_earlier_records
from deployments.limits import PublicLimits


@dataclass
class AppContext:
    """One per replica process; the routers reach it through `current()`."""

    runtime: Runtime
    db: AsyncDatabase
    admin_token: str
    local_services: Any | None  # ActorHandle of the embedded services, in local mode
    limits: PublicLimits
    conversations: Any | None = None  # app.chat.conversations.Conversations, in ChatBot

    @classmethod
    async def start(cls, settings: Settings, component: str) -> AppContext:
        telemetry.setup(settings, component)  # before the database client (its commands
        # are spans when tracing)
        endpoints = await resolve_endpoints(settings)
        token = admin_token(settings)
        runtime = Runtime.build(settings, endpoints, token)
        db = runtime.database()
        await ensure_indexes(db)
        await backfill_buckets(db)
        await rename_launch_options(db)
        await count_earlier_records(db)
        services = (local_services(settings)
                    if endpoints.local_sink or endpoints.local_smsc else None)
        return cls(runtime, db, token, services, PublicLimits(settings))

    @functools.cached_property
    def sign_in_key(self) -> bytes:
        return signing_key(self.admin_token)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def endpoints(self) -> Endpoints:
        return self.runtime.endpoints


_current: AppContext | None = None


def install(context: AppContext) -> AppContext:
    global _current
    _current = context
    return context


def current() -> AppContext:
    if _current is None:
        raise RuntimeError("the replica has not finished starting")
    return _current
