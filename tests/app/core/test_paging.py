"""Cursor paging against the real wire protocol (no Ray): every document exactly once,
newest first, across ties in time and across the widening windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pymongo import ASCENDING, DESCENDING, IndexModel

from app.core.paging import WHOLE, BadCursor, decode_cursor, encode_cursor, newest_first

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def _collection(db):
    collection = db["paging_test"]
    await collection.drop()
    await collection.create_indexes([
        IndexModel([("at", DESCENDING), ("_id", DESCENDING)]),
        IndexModel([("tag", ASCENDING), ("at", DESCENDING), ("_id", DESCENDING)])])
    ages = [0, 0, 0, 5, 5, 40, 300, 300, 300, 300, 4000, 90_000, 90_000, 10**7, 10**8]
    docs = [{"_id": f"d{n:02d}", "at": NOW - timedelta(seconds=age), "tag": "ab"[n % 2]}
            for n, age in enumerate(ages)]
    docs.append({"_id": "future", "at": NOW + timedelta(minutes=5), "tag": "a"})
    await collection.insert_many(docs)
    return collection, docs


async def _all_pages(collection, where, limit, **options):
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = await newest_first(collection, where, "at", limit, cursor, now=NOW,
                                          **options)
        seen += page
        pages += 1
        if cursor is None:
            return seen, pages


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
async def test_pages_hold_every_document_once_newest_first(db, limit: int) -> None:
    collection, docs = await _collection(db)
    seen, pages = await _all_pages(collection, {}, limit)
    expected = sorted(docs, key=lambda d: (d["at"], d["_id"]), reverse=True)
    assert [d["_id"] for d in seen] == [d["_id"] for d in expected]
    assert pages == max(1, -(-len(docs) // limit))


async def test_a_filter_pages_through_its_own_documents_only(db) -> None:
    collection, docs = await _collection(db)
    seen, _ = await _all_pages(collection, {"tag": "b"}, 2)
    assert [d["_id"] for d in seen] == [
        d["_id"] for d in sorted((d for d in docs if d["tag"] == "b"),
                                 key=lambda d: (d["at"], d["_id"]), reverse=True)]


async def test_an_empty_list_is_one_empty_page(db) -> None:
    collection, _ = await _collection(db)
    assert await newest_first(collection, {"tag": "none"}, "at", 5, now=NOW) == ([], None)


def test_cursors_round_trip_and_foreign_ones_are_refused() -> None:
    assert decode_cursor(encode_cursor(NOW, "x1")) == (NOW, "x1")
    for bad in ("", "abc", "e30", encode_cursor(NOW, "x")[:-3] + "!!!"):
        with pytest.raises(BadCursor):
            decode_cursor(bad)


async def test_a_small_collection_pages_the_same_in_one_query_a_page(db) -> None:
    collection, docs = await _collection(db)
    windowed, _ = await _all_pages(collection, {}, 4)
    whole, _ = await _all_pages(collection, {}, 4, windows=WHOLE)
    assert [d["_id"] for d in whole] == [d["_id"] for d in windowed] and len(whole) == len(docs)


def test_a_cursor_at_the_edge_of_time_is_refused_not_overflowed() -> None:
    for year in (1, 9999):
        forged = encode_cursor(datetime(year, 1, 1, tzinfo=UTC), "x")
        with pytest.raises(BadCursor):
            decode_cursor(forged)
