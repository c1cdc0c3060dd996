"""MongoDB access: one lazily created `AsyncMongoClient` per process, and the indexes.

PyMongo's async client belongs to the event loop that first uses it, so the cache is
keyed by (URI, loop): a Serve replica keeps one for its life, a send task that runs
`asyncio.run` per batch gets a fresh one each time.

Every hot query has an index that holds all of its filter fields. Real MongoDB would
intersect or partly use indexes; the embedded SecantusDB's planner scans the whole
collection unless one index covers every field of the filter (`{_id: x, status: y}`
needs an index with both), so the indexes below mirror the queries exactly.
"""

from __future__ import annotations

import asyncio

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

_clients: dict[tuple[str, int], AsyncMongoClient] = {}


def mongo_client(uri: str) -> AsyncMongoClient:
    loop = asyncio.get_running_loop()
    key = (uri, id(loop))
    client = _clients.get(key)
    if client is None:
        client = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000, tz_aware=True)
        _clients[key] = client
    return client


def database(uri: str, name: str) -> AsyncDatabase:
    return mongo_client(uri)[name]


async def close_clients() -> None:
    loop_id = id(asyncio.get_running_loop())
    for key in [key for key in _clients if key[1] == loop_id]:
        await _clients.pop(key).close()


INDEXES: dict[str, list[IndexModel]] = {
    "customers": [
        IndexModel([("email", ASCENDING)], unique=True),
        IndexModel([("phone", ASCENDING)]),
        IndexModel([("unsubscribed", ASCENDING), ("_id", ASCENDING)]),
    ],
    "campaigns": [IndexModel([("created_at", DESCENDING)])],
    "deliveries": [
        IndexModel([("campaign_id", ASCENDING), ("customer_id", ASCENDING)], unique=True),
        # claim one ({_id, status}) and record one outcome ({_id, claim, status})
        IndexModel([("_id", ASCENDING), ("status", ASCENDING), ("claim", ASCENDING)]),
        # what is due ({campaign_id, status, next_attempt_at}): pending ones to send,
        # and sending ones whose lease (kept in next_attempt_at) ran out; counts by status
        IndexModel([("campaign_id", ASCENDING), ("status", ASCENDING),
                    ("next_attempt_at", ASCENDING)]),
        # a task's claimed deliveries, lease renewal, release
        IndexModel([("campaign_id", ASCENDING), ("claim", ASCENDING), ("status", ASCENDING)]),
        # reports: by period (written once, at insert) and by send time (once, when sent)
        IndexModel([("created_at", ASCENDING)]),
        IndexModel([("campaign_id", ASCENDING), ("created_at", ASCENDING)]),
        IndexModel([("sent_at", ASCENDING)], sparse=True),
    ],
    "inbound_mail": [
        IndexModel([("account", ASCENDING), ("received_at", DESCENDING)]),
        IndexModel([("account", ASCENDING), ("kind", ASCENDING), ("received_at", DESCENDING)]),
    ],
    "chat_sessions": [IndexModel([("updated_at", DESCENDING)]),
                      IndexModel([("created_at", ASCENDING)])],
    "messages": [
        IndexModel([("session_id", ASCENDING), ("seq", ASCENDING)], unique=True),
        IndexModel([("outbox", ASCENDING)], sparse=True),
        IndexModel([("session_id", ASCENDING), ("offer.id", ASCENDING)], sparse=True),
    ],
    "events": [
        IndexModel([("type", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("delivered", ASCENDING), ("created_at", ASCENDING)]),
    ],
    "offers": [
        IndexModel([("_id", ASCENDING), ("status", ASCENDING), ("expires_at", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("fire_at", ASCENDING)]),
        IndexModel([("status", ASCENDING), ("expires_at", ASCENDING)]),
        IndexModel([("who", ASCENDING), ("created_at", DESCENDING)]),
        IndexModel([("created_at", DESCENDING)]),
        IndexModel([("sent_at", ASCENDING)], sparse=True),
        IndexModel([("accepted_at", ASCENDING)], sparse=True),
    ],
}


async def ensure_indexes(db: AsyncDatabase) -> None:
    """Create every index; safe to call from each replica at start-up."""
    await asyncio.gather(
        *(db[name].create_indexes(models) for name, models in INDEXES.items())
    )
