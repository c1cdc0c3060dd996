"""Outbound webhooks: endpoints, the events they want, and each event's delivery record.

Signed as Standard Webhooks do (the `standardwebhooks` library signs): headers
`webhook-id` (the same on every attempt, so receivers drop repeats),
`webhook-timestamp` and `webhook-signature` (`v1,` + base64 HMAC-SHA256 over
`id.timestamp.body`, keyed by the endpoint's `whsec_` secret).

Collections:
- `webhooks`: an endpoint: url, secret, event types, `ordered`, `max_in_flight`,
  `enabled` with a `disabled_reason`, `failing_since` while its attempts fail.
- `webhook_messages`: one event for one endpoint: its body, `status` (pending,
  delivered, dead), `attempts`, `next_at`, the last outcome and a short history.

`emit` stores an event for every endpoint that wants it (one `insert_many`; nothing
when none does, known from a per-process cache of the endpoints), and the caller
pokes the webhook actor (`actors.webhook_sender`), which sends. Retries follow
`webhook_retry_s` (about a day by default); then the message is dead, kept for a
replay. An endpoint failing for longer than `webhook_disable_after_s` is disabled
with the reason shown; a replay enables it again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError
from standardwebhooks.webhooks import Webhook

from app.core.paging import newest_first
from app.core.statuses import WebhookStatus

DELIVERY_STATUS = "delivery.status"
EVENT_TYPES = {
    DELIVERY_STATUS: "delivery outcomes of a campaign, as recorded (one event per flush "
                       "of a send task, up to a few dozen deliveries)",
    "campaign.started": "a campaign was launched",
    "campaign.completed": "a campaign finished sending",
    "offer.refused": "a customer refused an offer in the chat",
    "offer.sent": "a counter-offer reached the customer's inbox",
    "offer.accepted": "a customer accepted a counter-offer",
    "customer.unsubscribed": "a customer unsubscribed (link or reply)",
    "handoff.requested": "a chat asked for a human agent",
}
HISTORY = 10  # attempts kept on a message
DEFAULT_MAX_IN_FLIGHT = 4  # attempts at once to an unordered endpoint
ENDPOINT_FIELDS = {"url": 1, "events": 1, "ordered": 1, "max_in_flight": 1, "enabled": 1}


def now() -> datetime:
    return datetime.now(UTC)


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def signed_headers(secret: str, message_id: str, at: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, at, body),
            "content-type": "application/json", "user-agent": "operator-comms-webhooks"}


def body_of(message: dict) -> str:
    """The JSON body, the same bytes on every attempt."""
    return json.dumps({"type": message["type"], "timestamp": message["created_at"].isoformat(),
                       "data": message["data"]}, separators=(",", ":"), sort_keys=True,
                      default=str)


def next_attempt_in(schedule: list[float], attempts: int) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones; None: give up."""
    return schedule[attempts - 1] if attempts <= len(schedule) else None


# Endpoints ------------------------------------------------------------------------------


def url_for_log(url: str) -> str:
    """The URL without what may carry a credential (user info, query, fragment), for the
    audit log and log lines: receivers often take a token in the query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def endpoint_view(doc: dict, *, secret: bool = False) -> dict[str, Any]:
    view = {"id": doc["_id"], "url": doc["url"], "events": doc["events"],
            "description": doc.get("description"), "ordered": doc.get("ordered", False),
            "max_in_flight": doc.get("max_in_flight", DEFAULT_MAX_IN_FLIGHT),
            "enabled": doc.get("enabled", True),
            "disabled_reason": doc.get("disabled_reason"),
            "failing_since": _iso(doc.get("failing_since")),
            "created_at": _iso(doc.get("created_at")), "created_by": doc.get("created_by")}
    if secret:
        view["secret"] = doc["secret"]
    return view


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


async def create_endpoint(db: AsyncDatabase, *, url: str, events: list[str],
                          description: str | None, ordered: bool, max_in_flight: int,
                          created_by: str) -> dict:
    doc = {"_id": "ep_" + uuid.uuid4().hex[:16], "url": url, "events": sorted(set(events)),
           "description": description, "ordered": ordered, "max_in_flight": max_in_flight,
           "secret": new_secret(), "enabled": True, "disabled_reason": None,
           "failing_since": None, "created_at": now(), "created_by": created_by}
    await db.webhooks.insert_one(doc)
    subscriptions.forget()
    return doc


async def list_endpoints(db: AsyncDatabase) -> list[dict]:
    return await db.webhooks.find({}).sort("created_at", 1).to_list()


async def get_endpoint(db: AsyncDatabase, endpoint_id: str) -> dict | None:
    return await db.webhooks.find_one({"_id": endpoint_id})


async def change_endpoint(db: AsyncDatabase, endpoint_id: str, fields: dict[str, Any]
                          ) -> dict | None:
    """Change an endpoint; enabling it clears the reason and sends what it held back."""
    if fields.get("enabled") is True:
        fields = {**fields, "disabled_reason": None, "failing_since": None}
    if "events" in fields:
        fields["events"] = sorted(set(fields["events"]))
    doc = await db.webhooks.find_one_and_update(
        {"_id": endpoint_id}, {"$set": fields}, return_document=ReturnDocument.AFTER)
    if doc is not None and fields.get("enabled") is True:
        await db.webhook_messages.update_many(
            {"endpoint_id": endpoint_id, "status": WebhookStatus.PENDING},
            {"$set": {"next_at": now()}})
    subscriptions.forget()
    return doc


async def hold_messages(db: AsyncDatabase, message_ids: list[str], hold_s: float) -> None:
    """Messages of a disabled endpoint wait (enabling it brings them back at once)."""
    await db.webhook_messages.update_many(
        {"_id": {"$in": message_ids}, "status": WebhookStatus.PENDING},
        {"$set": {"next_at": now() + timedelta(seconds=hold_s)}})


async def delete_endpoint(db: AsyncDatabase, endpoint_id: str) -> bool:
    gone = await db.webhooks.delete_one({"_id": endpoint_id})
    subscriptions.forget()
    if gone.deleted_count:
        await db.webhook_messages.delete_many({"endpoint_id": endpoint_id})
    return bool(gone.deleted_count)


class Subscriptions:
    """Which enabled endpoints want which event types, read at most every `ttl_s` per
    process: emitting costs no read, and no write when nobody listens. A new endpoint
    hears events from at most `ttl_s` after its creation."""

    def __init__(self, ttl_s: float = 5.0):
        self.ttl_s = ttl_s
        self.read_at = float("-inf")
        self.read_from: str | None = None  # the database they were read from
        self.by_type: dict[str, list[str]] = {}

    async def endpoints_for(self, db: AsyncDatabase, event_type: str) -> list[str]:
        if time.monotonic() - self.read_at >= self.ttl_s or self.read_from != db.name:
            by_type: dict[str, list[str]] = {}
            async for doc in db.webhooks.find({"enabled": True}, {"events": 1}):
                for kind in doc["events"]:
                    by_type.setdefault(kind, []).append(doc["_id"])
            self.by_type, self.read_at, self.read_from = by_type, time.monotonic(), db.name
        return self.by_type.get(event_type, [])

    def forget(self) -> None:
        self.read_at = float("-inf")


subscriptions = Subscriptions()


def message_id(key: str, endpoint_id: str) -> str:
    return "msg_" + hashlib.sha256(f"{key}|{endpoint_id}".encode()).hexdigest()[:32]


async def emit(db: AsyncDatabase, event_type: str, data: dict[str, Any], *,
               key: str | None = None, listeners: Subscriptions | None = None,
               endpoints: list[str] | None = None) -> int:
    """Store one event for every endpoint that wants it (`endpoints` when the caller
    knows them, else read through `listeners`, this process's `subscriptions`); how
    many were stored. The caller pokes the webhook actor when this is more than 0. An
    event with a `key` (e.g. the chat event it reports) is stored once however often it
    is emitted, so a producer's retry does not reach the receiver as a second event."""
    if endpoints is None:
        endpoints = await (listeners or subscriptions).endpoints_for(db, event_type)
    if not endpoints:
        return 0
    at = now()
    event_id = "evt_" + (hashlib.sha256(key.encode()).hexdigest()[:32] if key
                         else uuid.uuid4().hex)
    docs = [{"_id": message_id(key, endpoint) if key else "msg_" + uuid.uuid4().hex,
             "event_id": event_id, "endpoint_id": endpoint, "type": event_type, "data": data,
             "created_at": at, "status": WebhookStatus.PENDING, "attempts": 0, "next_at": at}
            for endpoint in endpoints]
    try:
        await db.webhook_messages.insert_many(docs, ordered=False)
    except BulkWriteError as exc:  # stored before, under the same key
        if any(e["code"] != 11000 for e in exc.details["writeErrors"]):
            raise
        return len(docs) - len(exc.details["writeErrors"])
    return len(docs)


# Delivery records ------------------------------------------------------------------------


async def due_messages(db: AsyncDatabase, limit: int = 500) -> list[dict]:
    """Pending messages whose time has come, oldest first (index: status, next_at)."""
    return await db.webhook_messages.find(
        {"status": WebhookStatus.PENDING, "next_at": {"$lte": now()}}).sort(
        "next_at", 1).limit(limit).to_list()


async def pending_times(db: AsyncDatabase) -> list[float]:
    """When each pending message is next due (read once, when the actor starts)."""
    return [doc["next_at"].timestamp() async for doc in db.webhook_messages.find(
        {"status": WebhookStatus.PENDING}, {"next_at": 1})]


async def record_successes(db: AsyncDatabase, delivered: list[tuple[dict, int, float, datetime]],
                           recovered: list[str] | tuple[()] = ()) -> None:
    """Messages answered 2xx (message, status code, milliseconds, when), in one bulk
    write; `recovered`: endpoints that failed before and answer again."""
    if delivered:
        await db.webhook_messages.bulk_write([UpdateOne(
            {"_id": message["_id"]},
            {"$set": {"status": WebhookStatus.DELIVERED, "delivered_at": at,
                      "last_attempt_at": at, "last_status": code, "last_error": None},
             "$inc": {"attempts": 1},
             "$push": {"history": {"$each": [{"at": at, "status": code, "ms": round(ms, 1)}],
                                   "$slice": -HISTORY}}})
            for message, code, ms, at in delivered], ordered=False)
    if recovered:
        await db.webhooks.update_many({"_id": {"$in": list(recovered)}},
                                      {"$set": {"failing_since": None}})


async def record_failure(db: AsyncDatabase, message: dict, status_code: int | None,
                         error: str, schedule: list[float], disable_after_s: float
                         ) -> tuple[str, datetime | None]:
    """One failed attempt: pending again at the next step of the schedule, or dead
    past its end (the endpoint disabled if it failed for longer than `disable_after_s`).
    Returns the message's status and when it is due again."""
    at = now()
    attempts = message.get("attempts", 0) + 1
    wait = next_attempt_in(schedule, attempts)
    status = WebhookStatus.PENDING if wait is not None else WebhookStatus.DEAD
    due = at + timedelta(seconds=wait) if wait is not None else None
    await db.webhook_messages.update_one(
        {"_id": message["_id"]},
        {"$set": {"status": status, "next_at": due or at, "last_attempt_at": at,
                  "last_status": status_code, "last_error": error[:300],
                  "attempts": attempts},
         "$push": {"history": {"$each": [{"at": at, "status": status_code,
                                          "error": error[:300]}], "$slice": -HISTORY}}})
    endpoint = await db.webhooks.find_one_and_update(
        {"_id": message["endpoint_id"], "failing_since": None},
        {"$set": {"failing_since": at}}, return_document=ReturnDocument.AFTER)
    if endpoint is None:
        endpoint = await db.webhooks.find_one({"_id": message["endpoint_id"]},
                                              {"failing_since": 1, "enabled": 1})
    if (status == WebhookStatus.DEAD and endpoint is not None and endpoint.get("enabled")
            and endpoint.get("failing_since") is not None
            and (at - endpoint["failing_since"]).total_seconds() >= disable_after_s):
        reason = (f"every attempt failed since {endpoint['failing_since'].isoformat()}; "
                  f"last: {error[:200]}")
        await db.webhooks.update_one({"_id": message["endpoint_id"]},
                                     {"$set": {"enabled": False, "disabled_reason": reason}})
        subscriptions.forget()
    return status, due


async def replay_dead(db: AsyncDatabase, endpoint_id: str) -> int:
    """The endpoint's dead messages go out again (same ids), and the endpoint is enabled."""
    moved = await db.webhook_messages.update_many(
        {"endpoint_id": endpoint_id, "status": WebhookStatus.DEAD},
        {"$set": {"status": WebhookStatus.PENDING, "next_at": now(), "attempts": 0}})
    await change_endpoint(db, endpoint_id, {"enabled": True})
    return moved.modified_count


def message_view(doc: dict) -> dict[str, Any]:
    return {"id": doc["_id"], "event_id": doc.get("event_id"), "type": doc["type"],
            "status": doc["status"], "attempts": doc.get("attempts", 0),
            "created_at": _iso(doc.get("created_at")),
            "next_at": _iso(doc.get("next_at")) if doc["status"] == WebhookStatus.PENDING
            else None,
            "last_attempt_at": _iso(doc.get("last_attempt_at")),
            "last_status": doc.get("last_status"), "last_error": doc.get("last_error"),
            "delivered_at": _iso(doc.get("delivered_at"))}


async def messages_of(db: AsyncDatabase, endpoint_id: str, status: str | None,
                      limit: int, cursor: str | None = None) -> tuple[list[dict], str | None]:
    """An endpoint's messages, newest first, a page at a time (app.core.paging)."""
    where: dict[str, Any] = {"endpoint_id": endpoint_id}
    if status:
        where["status"] = status
    docs, next_cursor = await newest_first(db.webhook_messages, where, "created_at", limit,
                                           cursor)
    return [message_view(doc) for doc in docs], next_cursor


async def waiting_counts(db: AsyncDatabase, endpoint_id: str) -> dict[str, int]:
    """How many of the endpoint's messages wait (pending) and lie dead."""
    return {status.value: await db.webhook_messages.count_documents(
        {"endpoint_id": endpoint_id, "status": status})
        for status in (WebhookStatus.PENDING, WebhookStatus.DEAD)}
