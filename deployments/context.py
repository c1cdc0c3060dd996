"""What a replica holds once started: the runtime, its database, the admin token. A
replica creates no actor and changes no stored data when it starts; the launcher has
(`deployments.cluster`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from actors import registry
from actors.local_services import resolve_endpoints
from app.access.accounts import signing_key
from app.core.config import Settings
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.tokens import admin_token
from app.observability import telemetry
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
        # The launcher made the indexes, ran the migrations and started the cluster's
        # actors (`deployments.cluster`): a replica only finds them.
        services = (registry.find(registry.LOCAL_SERVICES)
                    if endpoints.local_sink or endpoints.local_smsc else None)
        return cls(runtime, runtime.database(), token, services, PublicLimits(settings))

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
