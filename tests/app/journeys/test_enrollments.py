"""Enrollments as pure logic: customers to shards, ids, a move's write."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from app.audience.customers import AUDIENCE_BUCKETS, bucket_of
from app.journeys import enrollments
from app.journeys.engine import Move, SendAction


def test_every_bucket_is_in_exactly_one_shards_range_and_shard_of_agrees() -> None:
    for shards in (1, 3, 4, 7, 64):
        ranges = [enrollments.buckets_of(n, shards) for n in range(shards)]
        owners = [[n for n, r in enumerate(ranges) if r["$gte"] <= b < r["$lt"]]
                  for b in range(AUDIENCE_BUCKETS)]
        assert all(len(owner) == 1 for owner in owners)
        for customer in (uuid.uuid4().hex for _ in range(200)):
            [owner] = owners[bucket_of(customer)]
            assert enrollments.shard_of(customer, shards) == owner


def test_the_same_entry_is_one_enrollment_unless_the_journey_takes_re_entries() -> None:
    assert enrollments.enrollment_id("w@2", "c1", "e1", False) == \
        enrollments.enrollment_id("w@3", "c1", "e2", False) == "w|c1"
    assert enrollments.enrollment_id("w@2", "c1", "e1", True) != \
        enrollments.enrollment_id("w@2", "c1", "e2", True)


def test_a_move_is_a_compare_and_swap_carrying_its_sends_in_the_outbox() -> None:
    at = datetime(2026, 12, 7, tzinfo=UTC)
    enrollment = {"_id": "w|c1", "version": 2, "seq": 4, "step": "wait", "outbox": []}
    move = Move(actions=[SendAction("hello", "email")], step="later",
                due_at=at + timedelta(hours=1))
    write = enrollments.move_update(enrollment, move, at)
    assert write.cas() == {"_id": "w|c1", "seq": 4, "status": "active"}
    assert write.update["$set"]["seq"] == 5 and write.after["seq"] == 5
    [item] = write.update["$push"]["outbox"]["$each"]
    assert item["key"] == "j|w|c1|2|hello|5" and write.after["outbox"] == [item]
    left = enrollments.move_update(enrollment, Move(left="exit"), at)
    assert left.update["$set"]["status"] == "done" and "due_at" in left.update["$unset"]
    assert "due_at" not in left.after


async def test_the_same_move_of_many_is_one_write_and_each_still_a_compare_and_swap(
        db) -> None:
    """Seventy customers whose timers fire the same move: two `updateMany` (64 ids
    each at most) and a customer with a send its own; one of them moved meanwhile by
    another round keeps that round's move."""
    at = datetime(2026, 12, 7, tzinfo=UTC)
    docs = [{"_id": f"w|c{n}", "version": 1, "seq": 3, "status": "active", "step": "wait",
             "due_at": at, "outbox": []} for n in range(71)]
    await db.journey_enrollments.insert_many(docs)
    await db.journey_enrollments.update_one({"_id": "w|c5"}, {"$set": {"seq": 4,
                                                                       "last_move": "other"}})
    writes = [enrollments.move_update(d, Move(left="exit"), at, "round1") for d in docs[:70]]
    writes.append(enrollments.move_update(docs[70], Move(
        actions=[SendAction("hello", "email")], left="exit"), at, "round1"))
    commands = enrollments._commands(writes)
    assert sorted(type(c).__name__ for c in commands) == [
        "UpdateMany", "UpdateMany", "UpdateOne"]
    written = await enrollments.apply_moves(db, writes)
    assert sorted(w["_id"] for w in written) == sorted(
        d["_id"] for d in docs if d["_id"] != "w|c5")
    moved = await db.journey_enrollments.find({"status": "done"}).to_list()
    assert len(moved) == 70 and {d["seq"] for d in moved} == {4}
    assert (await db.journey_enrollments.find_one({"_id": "w|c5"}))["last_move"] == "other"


def test_a_send_key_names_the_enrollment_and_customer_that_sent_it() -> None:
    from app.journeys.sending import sender_of

    for reentry in (False, True):
        enrollment = {"_id": enrollments.enrollment_id("w@2", "c1", "ev|x", reentry),
                      "version": 2}
        key = enrollments.send_key(enrollment, "hello", 5)
        assert sender_of(key) == (enrollment["_id"], "c1")
    assert sender_of("c:1") == (None, None) and sender_of("j|x") == (None, None)


async def test_a_made_outbox_is_emptied_in_one_write_unless_a_move_came_meanwhile(db) -> None:
    items = [{"key": "a"}, {"key": "b"}]
    await db.journey_enrollments.insert_many([
        {"_id": "e1", "seq": 2, "outbox": items, "has_outbox": True},
        {"_id": "e2", "seq": 3, "outbox": [*items, {"key": "c"}], "has_outbox": True},
        {"_id": "e3", "seq": 2, "outbox": items, "has_outbox": True}])
    await enrollments.clear_outbox(db, {
        "e1": (2, ["a", "b"], True),  # all of it, no move since
        "e2": (2, ["a", "b"], True),  # a move (seq 3) pushed "c" meanwhile
        "e3": (2, ["a"], False)})  # "b" waits for a retry
    found = {d["_id"]: d async for d in db.journey_enrollments.find()}
    assert (found["e1"]["outbox"], found["e1"]["has_outbox"]) == ([], False)
    assert (found["e2"]["outbox"], found["e2"]["has_outbox"]) == ([{"key": "c"}], True)
    assert (found["e3"]["outbox"], found["e3"]["has_outbox"]) == ([{"key": "b"}], True)
