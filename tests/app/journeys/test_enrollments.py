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
    update, after = enrollments.move_update(enrollment, move, at)
    assert update._filter == {"_id": "w|c1", "seq": 4, "status": "active"}
    assert update._doc["$set"]["seq"] == 5 and after["seq"] == 5
    [item] = update._doc["$push"]["outbox"]["$each"]
    assert item["key"] == "j|w|c1|2|hello|5" and after["outbox"] == [item]
    left, gone = enrollments.move_update(enrollment, Move(left="exit"), at)
    assert left._doc["$set"]["status"] == "done" and "due_at" in left._doc["$unset"]
    assert "due_at" not in gone


def test_a_send_key_names_the_enrollment_and_customer_that_sent_it() -> None:
    from app.journeys.sending import sender_of

    for reentry in (False, True):
        enrollment = {"_id": enrollments.enrollment_id("w@2", "c1", "ev|x", reentry),
                      "version": 2}
        key = enrollments.send_key(enrollment, "hello", 5)
        assert sender_of(key) == (enrollment["_id"], "c1")
    assert sender_of("c:1") == (None, None) and sender_of("j|x") == (None, None)
