"""What a replica holds once started: the runtime, its database, the admin token. A
replica creates no actor and changes no stored data when it starts; the launcher has
(`deployments.cluster`).

The runtime's signing keys are reloaded before a token is checked when they are older
than KEYS_FRESH_S (so a retired key stops working on every replica within that), or
when the token names a key this replica has not heard of (a key added elsewhere).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from actors import registry
from actors.local_services import resolve_endpoints
from app.core import signing_keys
from app.core.config import Settings
from app.core.db import database
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.tokens import admin_token
from app.observability import telemetry
from deployments.limits import PublicLimits

KEYS_FRESH_S = 10.0
UNKNOWN_KID_RELOAD_S = 1.0  # a forged kid makes at most one reload a second


@dataclass
class AppContext:
    """One per replica process; the routers reach it through `current()`."""

    runtime: Runtime
    db: AsyncDatabase
    admin_token: str
    local_services: Any | None  # ActorHandle of the embedded services, in local mode
    limits: PublicLimits
    conversations: Any | None = None  # app.chat.conversations.Conversations, in ChatBot
    keys_loaded: float = dataclasses.field(default_factory=time.monotonic)

    @classmethod
    async def start(cls, settings: Settings, component: str) -> AppContext:
        telemetry.setup(settings, component)  # before the database client (its commands
        # are spans when tracing)
        endpoints = await resolve_endpoints(settings)
        token = admin_token(settings)
        db = database(endpoints.mongodb_uri, settings.mongodb_db)
        runtime = Runtime.build(settings, endpoints, await signing_keys.load(db))
        # The launcher made the indexes, ran the migrations and started the cluster's
        # actors (`deployments.cluster`): a replica only finds them.
        services = (registry.find(registry.LOCAL_SERVICES)
                    if endpoints.local_sink or endpoints.local_smsc else None)
        return cls(runtime, db, token, services, PublicLimits(settings))

    async def runtime_for(self, purpose: str, kid: str | None = None) -> Runtime:
        """The runtime to sign or check a `purpose` token with (`kid`: the key the token
        names), its keys reloaded first when stale or when `kid` is new to them."""
        age = time.monotonic() - self.keys_loaded
        if age > KEYS_FRESH_S or (kid is not None and age > UNKNOWN_KID_RELOAD_S
                                  and not self.runtime.keys.knows(purpose, kid)):
            self.keys_loaded = time.monotonic()
            self.runtime = dataclasses.replace(self.runtime,
                                               keys=await signing_keys.load(self.db))
        return self.runtime

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
