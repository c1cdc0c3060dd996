"""Customers' push subscriptions: what a verified chat page's browser gave us, checked
(an endpoint on an allowed push service, a P-256 point and a 16-byte auth secret) and
kept on the customer (`webpush`: one browser, the latest; a new subscription is the
customer's own opt-in, so a web push suppression of theirs is lifted)."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pymongo.asynchronous.database import AsyncDatabase

from app.audience import suppressions
from app.channels.webpush.push import allowed

CHANNEL = "webpush"


class Keys(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p256dh: str = Field(min_length=80, max_length=100,
                        description="the browser's P-256 public key, base64url")
    auth: str = Field(min_length=16, max_length=32, description="16 bytes, base64url")

    @field_validator("p256dh")
    @classmethod
    def _a_point(cls, value: str) -> str:
        raw = _decoded(value)
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("not an uncompressed P-256 point")
        return value

    @field_validator("auth")
    @classmethod
    def _sixteen_bytes(cls, value: str) -> str:
        if len(_decoded(value)) != 16:
            raise ValueError("not 16 bytes")
        return value


class PushSubscription(BaseModel):
    """What `PushSubscription.toJSON()` gives a page (`expirationTime` ignored)."""

    model_config = ConfigDict(extra="ignore")
    endpoint: str = Field(min_length=10, max_length=1024)
    keys: Keys


def _decoded(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def endpoint_allowed(endpoint: str, services: list[str], local: str = "") -> bool:
    return allowed(endpoint, [*services, *([local] if local else [])])


async def keep(db: AsyncDatabase, customer_id: str, subscription: PushSubscription) -> bool:
    """Keep the browser's subscription on the customer; False if no such customer."""
    done = await db.customers.update_one({"_id": customer_id}, {
        "$set": {"webpush": {"endpoint": subscription.endpoint,
                             "p256dh": subscription.keys.p256dh,
                             "auth": subscription.keys.auth, "at": datetime.now(UTC)}},
        "$pull": {"opted_out": CHANNEL}})
    if done.matched_count:
        await suppressions.lift(db, CHANNEL, subscription.endpoint)
    return done.matched_count == 1


async def drop(db: AsyncDatabase, endpoints: list[str]) -> None:
    """The push service says these subscriptions are gone: nobody keeps them."""
    if endpoints:
        await db.customers.update_many({"webpush.endpoint": {"$in": endpoints}},
                                       {"$unset": {"webpush": ""}})
