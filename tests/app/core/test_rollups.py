"""Report roll-ups as pure logic: buckets, percentiles, a retry's transition, folding."""

from __future__ import annotations

from datetime import UTC, datetime

from app.core import rollup_repair, rollups


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def test_buckets_are_fine_where_latency_usually_is() -> None:
    assert [rollups.bucket(v) for v in (0, 7.9, 99.99, 100, 123.4, 999, 1000, 4567, 12_345,
                                        10**9)] == [0, 7, 99, 100, 120, 990, 1000, 4500,
                                                    12_000, 600_000]


def test_percentile_is_the_nearest_rank_bucket() -> None:
    histogram = {"10": 1, "20": 1, "30": 1, "40": 1}
    assert rollups.percentile(histogram, 0.5) == 20.0
    assert rollups.percentile(histogram, 0.95) == 40.0
    assert rollups.percentile({}, 0.5) is None
    values = [3.2, 150.0, 151.0, 152.0, 2400.0]
    histogram = {}
    for v in values:
        histogram[str(rollups.bucket(v))] = histogram.get(str(rollups.bucket(v)), 0) + 1
    assert rollups.percentile(histogram, 0.5) == rollups.bucket(151.0)


def test_a_retry_moves_its_delivery_on_its_creation_day() -> None:
    first = {"_id": "c:1", "status": "pending", "attempts": 1, "created_at": at(10, 23),
             "last_attempt_at": at(10, 23)}
    increments = rollups.Increments()
    increments.outcome("c", first, None)
    retry = {"status": "sent", "attempts": 2, "last_attempt_at": at(11, 1),
             "sent_at": at(11, 1), "latency_ms": 42.0, "node": "n1", "worker": "w.1"}
    increments.outcome("c", retry, first)
    docs = increments.docs()
    assert docs["c|2026-11-10"]["counts"] == {"sent": 1}  # pending +1 -1
    assert docs["c|2026-11-10"]["retries"] == 1
    assert docs["c|2026-11-10"]["latency"] == {"42": 1}
    assert docs["c|2026-11-10"]["by_worker"] == {"w_1": 1}
    assert docs["c|2026-11-11"]["emails"] == 1  # billed the day it was sent
    assert "counts" not in docs["c|2026-11-11"]
    # The same, folded from the final record alone, gives the same documents.
    final = {**first, **retry}
    assert rollup_repair.fold([{**final, "campaign_id": "c"}]) == docs


def test_days_of_a_period() -> None:
    assert rollups.days(at(1, 0), at(3, 0)) == ("2026-11-01", "2026-11-03")
    assert rollups.days(at(1, 5), at(3, 5)) == ("2026-11-01", "2026-11-04")


def test_a_sessions_moves_add_up_to_where_it_is_now() -> None:
    moves = rollups.Increments()
    moves.session_created(at(10, 23), {"node": "start"})
    moves.session_moved("2026-11-10", {"node": "start"}, {"node": "upgrade"})
    moves.session_moved("2026-11-10", {"node": "upgrade"}, {"node": "upgrade"})  # no move
    moves.session_moved("2026-11-10", {"node": "upgrade"}, {"node": "bye", "ended": True})
    moves.session_moved(None, {"node": "a"}, {"node": "b"})  # a session of no known day
    [update] = moves.updates()
    assert update._doc["$inc"] == {"sessions": 1, "completed": 1}  # the zeros are not sent
    assert update._filter == {"_id": "chat|2026-11-10"}
    # The same as a recount from the session as it now is.
    assert rollup_repair.fold_chat([{"created_at": at(10, 23), "node": "bye", "ended": True}],
                             [], [], []) == moves.docs()


def test_events_and_offers_count_on_their_own_day() -> None:
    counted = rollups.Increments()
    counted.event({"type": "offer_refused", "created_at": at(12)})
    counted.event({"type": "something_else", "created_at": at(12)})  # not reported
    counted.offers_sent(at(12), 3)
    counted.offer_accepted(at(12, 10), datetime(2026, 11, 13, 0, 30, tzinfo=UTC))
    docs = counted.docs()
    assert docs["chat|2026-11-12"] == {"kind": "chat", "day": "2026-11-12",
                                       "events": {"offer_refused": 1}, "offers_sent": 3}
    assert docs["chat|2026-11-13"]["accepted"] == 1
    assert docs["chat|2026-11-13"]["accept_s"] == {str(rollups.bucket(14.5 * 3600)): 1}


def test_increments_that_could_not_be_written_merge_back() -> None:
    first, second = rollups.Increments(), rollups.Increments()
    first.session_created(at(12), {"node": "start"})
    second.session_created(at(12), {"node": "start"})
    second.offers_sent(at(13), 2)
    assert not rollups.Increments() and first
    first.merge(second)
    docs = first.docs()
    assert docs["chat|2026-11-12"]["sessions"] == 2
    assert docs["chat|2026-11-12"]["open_at"] == {"start": 2}
    assert docs["chat|2026-11-13"]["offers_sent"] == 2


def test_a_writer_holding_the_increments_across_a_take_lands_in_the_next_one() -> None:
    gathering = rollups.Increments()
    held = gathering  # a turn awaiting its insert holds the replica's increments
    gathering.session_created(at(12), {"node": "start"})
    taken = gathering.take()  # the flush
    held.session_moved("2026-11-12", {"node": "start"}, {"node": "billing"})
    assert taken.docs()["chat|2026-11-12"] == {"kind": "chat", "day": "2026-11-12",
                                               "sessions": 1, "open_at": {"start": 1}}
    [update] = gathering.updates()  # the move waits for the next flush, not lost
    assert update._doc["$inc"] == {"open_at.start": -1, "open_at.billing": 1}


def test_a_bounce_leaves_the_roll_ups_as_a_recount_would() -> None:
    sent = {"_id": "c:1", "campaign_id": "c", "status": "sent", "attempts": 1,
            "created_at": at(10), "last_attempt_at": at(10), "sent_at": at(11, 1),
            "latency_ms": 42.0, "node": "n1", "worker": "w1", "last_code": 250}
    increments = rollups.Increments()
    increments.outcome("c", sent, None)
    bounce = {"status": "failed", "last_code": 550, "last_error": "no such user"}
    increments.bounced("c", sent, bounce)
    docs = increments.docs()
    recount = rollup_repair.fold([{**sent, **bounce}])  # it was sent: first and last send stay
    assert docs == {_id: doc for _id, doc in recount.items()} | {
        "c|2026-11-11": {"kind": "campaign", "campaign_id": "c", "day": "2026-11-11"}}
    assert docs["c|2026-11-10"]["counts"] == {"failed": 1}
    assert docs["c|2026-11-10"]["failures"] == {"550": 1}
    assert docs["c|2026-11-10"]["first_sent"] == sent["sent_at"]


def test_billing_counts_an_email_an_sms_s_parts_and_other_messages_apart() -> None:
    base = {"campaign_id": "c", "status": "sent", "attempts": 1, "created_at": at(10),
            "last_attempt_at": at(10), "sent_at": at(10, 1), "node": "n", "worker": "w"}
    increments = rollups.Increments()
    for n, extra in enumerate(({}, {"channel": "email"}, {"channel": "sms", "segments": 3},
                               {"channel": "telegram"})):
        increments.outcome("c", {**base, "_id": f"c:{n}", **extra}, None)
    day = increments.docs()["c|2026-11-10"]
    assert (day["emails"], day["sms_segments"], day["messages"]) == (2, 3, {"telegram": 1})


def test_the_completion_repair_leaves_what_late_writers_count_as_stored() -> None:
    """Receipts, statuses and tracking hits go on after a campaign completes: the
    completion's repair must not count one whose delivery changed a moment before its
    roll-up's increment lands (it would then be counted twice)."""
    recount = {"c|2026-11-10": {"kind": "campaign", "campaign_id": "c", "day": "2026-11-10",
                                "counts": {"sent": 2}, "opened": 2,
                                "receipts": {"delivered": 2},
                                "funnel": {"whatsapp": {"sent": 2, "delivered": 2,
                                                        "read": 2}}}}
    stored = [{"_id": "c|2026-11-10", "kind": "campaign", "campaign_id": "c",
               "day": "2026-11-10", "counts": {"sent": 1}, "opened": 1,
               "receipts": {"delivered": 1},
               "funnel": {"whatsapp": {"sent": 1, "delivered": 1, "read": 1}}}]
    [kept] = rollup_repair._with_late_as_stored(recount, stored).values()
    assert kept["counts"] == {"sent": 2}  # what sends wrote is repaired
    assert kept["funnel"]["whatsapp"] == {"sent": 2, "delivered": 1, "read": 1}
    assert (kept["opened"], kept["receipts"]) == (1, {"delivered": 1})  # as stored


def test_a_send_a_fallback_moved_on_still_counts_for_the_first_send_time() -> None:
    """WhatsApp sent first, not confirmed, SMS later: the campaign's first send is the
    WhatsApp one, as it happened and in a recount of the record (its `tried`)."""
    whatsapp = {"_id": "c:1", "campaign_id": "c", "status": "sent", "attempts": 1,
                "created_at": at(10), "last_attempt_at": at(10), "sent_at": at(10, 1),
                "channel": "whatsapp", "node": "n1", "worker": "w1"}
    increments = rollups.Increments()
    increments.outcome("c", whatsapp, None)
    increments.moved_on("c", whatsapp)
    pending = {k: v for k, v in whatsapp.items() if k not in ("sent_at", "channel")} | {
        "status": "pending", "attempts": 0,
        "tried": [{"channel": "whatsapp", "sent_at": at(10, 1), "why": "failed"}]}
    sms = {**pending, "status": "sent", "attempts": 1, "channel": "sms", "segments": 1,
           "sent_at": at(10, 5), "last_attempt_at": at(10, 5)}
    increments.outcome("c", sms, pending)
    recount = rollup_repair.fold([sms])
    assert recount["c|2026-11-10"]["first_sent"] == at(10, 1)
    assert increments.docs()["c|2026-11-10"]["first_sent"] == at(10, 1)
    assert recount["c|2026-11-10"]["last_sent"] == at(10, 5)
