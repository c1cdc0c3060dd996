"""API models of signup: what clients send (validated, with limits) and what we return."""

from __future__ import annotations

from app.core.models import Any_, Reply


class SignupOverview(Reply):
    configured: bool
    account: str | None
    state: Any_ | None
    counts: dict[str, int]
    by_campaign: list[Any_]
    recent: list[Any_]
    review_queue: list[Any_]
    watcher: Any_


class Poked(Reply):
    poked: bool
