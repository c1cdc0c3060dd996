"""API models of integrations: what clients send (validated, with limits) and what we return."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    Field,
    StringConstraints,
    field_validator,
)

from app.core.models import Any_, Reply, Strict
from app.integrations.webhooks import DEFAULT_MAX_IN_FLIGHT, EVENT_TYPES


class Outbox(Reply):
    total: int
    matched: int
    messages: list[Any_]


WebhookUrl = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000,
                                              pattern=r"^https?://[^\s/?#]+[^\s]*$")]


EventType = Annotated[str, StringConstraints(pattern=r"^[a-z]+\.[a-z_]+$")]


class WebhookEvents(Strict):
    events: list[EventType] | None = Field(default=None, min_length=1, max_length=20)

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str] | None) -> list[str] | None:
        unknown = sorted(set(events or []) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)}")
        return events


class NewWebhook(WebhookEvents):
    url: WebhookUrl
    events: list[EventType] = Field(min_length=1, max_length=20)
    description: str | None = Field(default=None, max_length=200)
    ordered: bool = Field(default=False, description="one at a time, in creation order")
    max_in_flight: int = Field(default=DEFAULT_MAX_IN_FLIGHT, ge=1, le=32)


class WebhookChange(WebhookEvents):
    url: WebhookUrl | None = None
    description: str | None = Field(default=None, max_length=200)
    ordered: bool | None = None
    max_in_flight: int | None = Field(default=None, ge=1, le=32)
    enabled: bool | None = None


class WebhookView(Reply):
    id: str
    url: str
    events: list[str]
    ordered: bool
    max_in_flight: int
    enabled: bool
    disabled_reason: str | None
    waiting: dict[str, int] | None = Field(default=None,
                                           description="messages pending and dead")
    secret: str | None = Field(default=None, description="shown once, at creation")


class WebhookList(Reply):
    webhooks: list[WebhookView]
    event_types: dict[str, str]


class WebhookMessages(Reply):
    messages: list[Any_]
    next_cursor: str | None


class Replayed(Reply):
    replayed: int
