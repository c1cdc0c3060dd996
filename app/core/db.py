"""MongoDB access: one lazily created `AsyncMongoClient` per process, and the indexes.

PyMongo's async client belongs to the event loop that first uses it, so the cache is
keyed by (URI, loop): a Serve replica, an actor, and a send worker process (whose
batches all run on its one loop thread, `app.campaigns.send_tasks.worker_loop`) each
keep one for their life.

Every hot query has an index that holds all of its filter fields. Real MongoDB would
intersect or partly use indexes; the embedded SecantusDB's planner scans the whole
collection unless one index covers every field of the filter (`{_id: x, status: y}`
needs an index with both), so the indexes below mirror the queries exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

_clients: dict[tuple[str, int], AsyncMongoClient] = {}
MAX_IDLE_MS = 60_000
# Every Ray worker, actor and replica holds a client of its own. With the driver's
# defaults each keeps two monitoring connections to each server and sends two `hello`s
# every 10 s (the streaming monitor and its round-trip pinger): at a slow relay the
# fleet's hellos were nearly as many commands as the campaign's own. Polling every 30 s is
# one connection and one `hello` per 30 s; a failover is still found at once, by the
# first operation that meets it (the driver then checks every 0.5 s until a primary
# answers). The URI can set either option (`?serverMonitoringMode=stream`).
MONITORING: dict[str, Any] = {"serverMonitoringMode": "poll", "heartbeatFrequencyMS": 30_000}


def monitoring_options(uri: str) -> dict[str, Any]:
    """MONITORING, less whatever the URI sets itself (its options win)."""
    named = {key.lower() for key, _ in parse_qsl(urlsplit(uri).query)}
    return {key: value for key, value in MONITORING.items() if key.lower() not in named}


def mongo_client(uri: str) -> AsyncMongoClient:
    loop = asyncio.get_running_loop()
    key = (uri, id(loop))
    client = _clients.get(key)
    if client is None:
        # Pooled connections idle for a minute are closed before reuse: servers drop idle
        # clients (SecantusDB after 5 minutes), and a write sent on a dropped connection
        # fails with AutoReconnect when retryable writes are off (as for the embedded one).
        client = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000, tz_aware=True,
                                  maxIdleTimeMS=MAX_IDLE_MS, **monitoring_options(uri))
        _clients[key] = client
    return client


def database(uri: str, name: str) -> AsyncDatabase:
    return mongo_client(uri)[name]


async def close_clients() -> None:
    loop_id = id(asyncio.get_running_loop())
    for key in [key for key in _clients if key[1] == loop_id]:
        await _clients.pop(key).close()


INDEXES: dict[str, list[IndexModel]] = {
    "channel_inbox": [IndexModel([("channel", ASCENDING), ("address", ASCENDING),
                                  ("taken", ASCENDING), ("seq", ASCENDING)])],
    # a fallback rule's waits: a campaign's due ones, and how many are left
    "fallback_waits": [IndexModel([("campaign_id", ASCENDING), ("due_at", ASCENDING)])],
    "channel_statuses": [IndexModel([("channel", ASCENDING), ("received_at", ASCENDING)])],
    "customers": [
        IndexModel([("email", ASCENDING)], unique=True),
        IndexModel([("phone", ASCENDING)]),
        IndexModel([("telegram.chat_id", ASCENDING)]),  # whose chat a Telegram update is
        IndexModel([("unsubscribed", ASCENDING), ("_id", ASCENDING)]),
        # audience pages: {bucket or shard, unsubscribed, tags} (neither for one page)
        IndexModel([("bucket", ASCENDING), ("unsubscribed", ASCENDING), ("tags", ASCENDING)]),
        IndexModel([("shard", ASCENDING), ("unsubscribed", ASCENDING), ("tags", ASCENDING)]),
        IndexModel([("unsubscribed", ASCENDING), ("tags", ASCENDING)]),
        # a send checks whose consent changed since its page was read
        IndexModel([("unsubscribed_at", ASCENDING)], sparse=True),
        IndexModel([("consent_changed_at", ASCENDING)], sparse=True),
        IndexModel([("outbox.key", ASCENDING)], sparse=True),  # events left (outbox)
        # the customer list's pages, all or by tag (app.core.paging)
        IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("tags", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
    ],
    "campaigns": [IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)]),
                  IndexModel([("outbox.key", ASCENDING)], sparse=True)],
    "users": [IndexModel([("api_keys.id", ASCENDING)])],
    # the suppression list's pages, all or by channel (app.core.paging)
    "suppressions": [IndexModel([("at", DESCENDING), ("_id", DESCENDING)]),
                     IndexModel([("channel", ASCENDING), ("at", DESCENDING),
                                 ("_id", DESCENDING)])],
    "audit": [IndexModel([("at", DESCENDING), ("_id", DESCENDING)])],
    # The send path writes one delivery per message, and on the embedded database any
    # secondary index sends each insert down a per-document slow path (several times
    # the server's CPU per delivery; `benchmarks.send_path_cpu`): deliveries keep only
    # `_id`. The send path reads them by `_id`; a period's recount finds them through
    # its batches (`rollup_repair.deliveries_created_between`).
    "deliveries": [],
    "batches": [
        # renew, close: {_id, claim} (`runs` was a start counter of earlier releases)
        IndexModel([("_id", ASCENDING), ("claim", ASCENDING), ("runs", ASCENDING)]),
        # claim a pending one: {_id, status}
        IndexModel([("_id", ASCENDING), ("status", ASCENDING)]),
        # open batches, due ones, expired leases (not_before), the newest by seq
        IndexModel([("campaign_id", ASCENDING), ("status", ASCENDING),
                    ("not_before", ASCENDING)]),
        IndexModel([("campaign_id", ASCENDING), ("seq", DESCENDING)]),
    ],
    "inbound_mail": [
        # recent and review lists, newest first (app.core.paging)
        IndexModel([("account", ASCENDING), ("received_at", DESCENDING),
                    ("_id", DESCENDING)]),
        IndexModel([("account", ASCENDING), ("kind", ASCENDING), ("received_at", DESCENDING),
                    ("_id", DESCENDING)]),
    ],
    "chat_sessions": [IndexModel([("updated_at", DESCENDING), ("_id", DESCENDING)]),
                      IndexModel([("created_at", ASCENDING)]),
                      # summaries only move forward: {_id, last_seq: {$lt: n}}
                      IndexModel([("_id", ASCENDING), ("last_seq", ASCENDING)])],
    "sms_inbox": [IndexModel([("received_at", ASCENDING)])],  # a restarted gateway's
    "chat_claims": [IndexModel([("at", ASCENDING)], expireAfterSeconds=7200)],  # per hour
    "messages": [
        IndexModel([("session_id", ASCENDING), ("seq", ASCENDING)], unique=True),
        IndexModel([("outbox", ASCENDING)], sparse=True),
    ],
    "events": [
        # the open handoffs, newest first (app.core.paging)
        IndexModel([("type", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("delivered", ASCENDING), ("created_at", ASCENDING)]),
    ],
    "rollups": [
        # reports: one kind over a range of days; a campaign's, at its completion
        IndexModel([("kind", ASCENDING), ("day", ASCENDING)]),
        IndexModel([("kind", ASCENDING), ("campaign_id", ASCENDING)]),
    ],
    "webhook_messages": [
        # the webhook actor's due messages: {status, next_at <= now}
        IndexModel([("status", ASCENDING), ("next_at", ASCENDING)]),
        # an endpoint's messages, newest first, all or by status (app.core.paging)
        IndexModel([("endpoint_id", ASCENDING), ("created_at", DESCENDING),
                    ("_id", DESCENDING)]),
        IndexModel([("endpoint_id", ASCENDING), ("status", ASCENDING),
                    ("created_at", DESCENDING), ("_id", DESCENDING)]),
    ],
    "journeys": [IndexModel([("key", ASCENDING), ("version", DESCENDING)], unique=True),
                 IndexModel([("status", ASCENDING)])],
    "journey_enrollments": [
        IndexModel([("bucket", ASCENDING), ("status", ASCENDING)]),  # a shard's load
        IndexModel([("customer_id", ASCENDING)]),  # an event's customer
        IndexModel([("key", ASCENDING), ("status", ASCENDING)]),  # an archive
        IndexModel([("has_outbox", ASCENDING), ("bucket", ASCENDING)]),
    ],
    "journey_events": [IndexModel([("taken", ASCENDING), ("bucket", ASCENDING),
                                   ("stored_at", ASCENDING)]),
                       IndexModel([("type", ASCENDING), ("stored_at", ASCENDING)])],
    "journey_counts": [IndexModel([("version_id", ASCENDING)]),
                       IndexModel([("shard", ASCENDING)])],
    "journey_sends": [IndexModel([("enrollment_id", ASCENDING)])],
    "offers": [
        IndexModel([("_id", ASCENDING), ("status", ASCENDING), ("expires_at", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("fire_at", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("expires_at", ASCENDING)]),
        IndexModel([("who", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("created_at", DESCENDING)]),
        IndexModel([("sent_at", ASCENDING)], sparse=True),
        IndexModel([("accepted_at", ASCENDING)], sparse=True),
        IndexModel([("email_after", ASCENDING)], sparse=True),  # emails waiting (presence)
    ],
}


async def ensure_indexes(db: AsyncDatabase) -> None:
    """Create every index; safe to call from each replica at start-up. Indexes of an
    earlier version that the hot paths no longer want are dropped (each one costs
    every delivery write, or every chat turn)."""
    await asyncio.gather(
        *(db[name].create_indexes(models) for name, models in INDEXES.items() if models)
    )
    for collection in ("deliveries", "messages", "chat_sessions", "campaigns",
                       "inbound_mail", "events"):
        wanted = {model.document["name"] for model in INDEXES[collection]} | {"_id_"}
        for name in (await db[collection].index_information()):
            if name not in wanted:
                try:
                    await db[collection].drop_index(name)
                except OperationFailure as exc:  # another replica dropped it first
                    if exc.code != 27:  # IndexNotFound
                        raise
