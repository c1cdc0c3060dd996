"""What a replica holds once started: settings, resolved endpoints, database, token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from actors.local_services import local_services, resolve_endpoints
from app.config import Endpoints, Settings
from app.customers import backfill_buckets
from app.db import database, ensure_indexes
from app.tokens import admin_token


@dataclass
class AppContext:
    """One per replica process; the routers reach it through `current()`."""

    settings: Settings
    endpoints: Endpoints
    db: AsyncDatabase
    admin_token: str
    local_services: Any | None  # ActorHandle of the embedded services, in local mode
    conversations: Any | None = None  # app.conversations.Conversations, in ChatBot

    @classmethod
    async def start(cls, settings: Settings) -> AppContext:
        endpoints = await resolve_endpoints(settings)
        db = database(endpoints.mongodb_uri, settings.mongodb_db)
        await ensure_indexes(db)
        await backfill_buckets(db)
        services = local_services(settings) if endpoints.local_sink else None
        return cls(settings, endpoints, db, admin_token(settings), services)


_current: AppContext | None = None


def install(context: AppContext) -> AppContext:
    global _current
    _current = context
    return context


def current() -> AppContext:
    if _current is None:
        raise RuntimeError("the replica has not finished starting")
    return _current
