"""Report roll-ups as pure logic: buckets, percentiles, a retry's transition, folding."""

from __future__ import annotations

from datetime import UTC, datetime

from app import rollups


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
    assert rollups.fold([{**final, "campaign_id": "c"}]) == docs


def test_days_of_a_period() -> None:
    assert rollups.days(at(1, 0), at(3, 0)) == ("2026-11-01", "2026-11-03")
    assert rollups.days(at(1, 5), at(3, 5)) == ("2026-11-01", "2026-11-04")
