"""Cursor paging, newest first, over a (time, _id) index: bounded pages and no counts.

A page is the `limit` newest documents strictly before the cursor in (time, _id) order;
its cursor is the last one's (time, _id), opaque to clients (base64url JSON). A page
costs one query for the cursor's tie (same time, smaller _id) and then reads below it in
windows that widen geometrically (10 s, 1 min, ... then the rest) until the page is
full: the embedded database walks every key of an index range before a limit applies,
so the range read is kept near what the page needs instead of the whole collection.
Each collection listed this way has an index on (extra equality fields..., time, _id).
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import DESCENDING
from pymongo.asynchronous.collection import AsyncCollection

WINDOWS = tuple(timedelta(seconds=10 * 6 ** n) for n in range(9)) + (None,)  # ..~6 years
WHOLE = (None,)  # no windows
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # the times a cursor or a period may name
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


class BadCursor(ValueError):
    """The cursor was not one this API handed out."""


def encode_cursor(at: datetime, doc_id: str) -> str:
    raw = json.dumps([at.isoformat(), doc_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, doc_id = json.loads(raw)
        when = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise BadCursor("not a cursor from this list: start again without one") from None
    # A forged time near year 1 or 9999 would overflow the windows' arithmetic.
    if not EARLIEST <= when.replace(tzinfo=when.tzinfo or UTC) <= LATEST:
        raise BadCursor("not a cursor from this list: start again without one")
    return when, str(doc_id)


async def newest_first(collection: AsyncCollection, where: dict[str, Any], field: str,
                       limit: int, cursor: str | None = None,
                       projection: dict[str, Any] | None = None,
                       now: datetime | None = None,
                       windows: tuple[timedelta | None, ...] = WINDOWS
                       ) -> tuple[list[dict], str | None]:
    """(up to `limit` documents matching `where`, newest `field` first; the cursor of
    the next page, None when this one is the last). A small collection passes
    `windows=WHOLE`: one query, since walking its index costs less than more commands."""
    order = [(field, DESCENDING), ("_id", DESCENDING)]
    docs: list[dict] = []
    if cursor is None:
        top, below = now or datetime.now(UTC), {}  # the first page: back from now
    else:
        top, last_id = decode_cursor(cursor)
        docs = await collection.find({**where, field: top, "_id": {"$lt": last_id}},
                                     projection).sort(order).limit(limit + 1).to_list()
        below = {"$lt": top}
    wanted = limit + 1 - len(docs)  # one more than the page: is there a next one?
    for window in windows if wanted > 0 else ():
        bound = below if window is None else {**below, "$gte": top - window}
        query = {**where, field: bound} if bound else where
        found = await collection.find(query, projection).sort(order).limit(wanted).to_list()
        if len(found) >= wanted or window is None:
            docs += found  # a narrower window's finds are a prefix of these: taken once
            break
    page, more = docs[:limit], len(docs) > limit
    return page, encode_cursor(page[-1][field], page[-1]["_id"]) if more else None
