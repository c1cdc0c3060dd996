"""The audit log: who changed what, and when. One document per change (a launch, a
pause, a cancel, an import, a user or API key change, a report repair), written by the
route that made it; read newest first, a page at a time (`app.core.paging`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.access.accounts import Principal
from app.core.paging import newest_first


async def record(db: AsyncDatabase, who: Principal, action: str, target: str | None = None,
                 detail: dict[str, Any] | None = None) -> None:
    await db.audit.insert_one({"_id": uuid.uuid4().hex, "at": datetime.now(UTC),
                               "who": who.name, "role": who.role, "via": who.via,
                               "action": action, "target": target, "detail": detail or {}})


async def entries(db: AsyncDatabase, limit: int, cursor: str | None = None
                  ) -> tuple[list[dict[str, Any]], str | None]:
    docs, next_cursor = await newest_first(db.audit, {}, "at", limit, cursor)
    return [{"id": d["_id"], "at": d["at"].isoformat(), "who": d["who"], "role": d["role"],
             "via": d["via"], "action": d["action"], "target": d.get("target"),
             "detail": d.get("detail", {})} for d in docs], next_cursor
