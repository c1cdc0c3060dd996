"""Token buckets on a controllable clock: no sleeping, no timing assertions."""

from __future__ import annotations

import pytest

from app.ratelimit import RateLimits, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def test_burst_then_spacing_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=10, burst=2, clock=clock)
    assert bucket.reserve() == 0 and bucket.reserve() == 0
    # The bucket is empty: each next token is 1/10 s further away.
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)
    clock.advance(0.2)
    assert bucket.reserve() == pytest.approx(0.1)


def test_refill_never_exceeds_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=5, burst=3, clock=clock)
    clock.advance(3600)
    waits = [bucket.reserve() for _ in range(4)]
    assert waits[:3] == [0, 0, 0] and waits[3] == pytest.approx(0.2)


def test_long_run_rate_is_the_configured_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=50, burst=1, clock=clock)
    # 1000 callers reserve at once: the last may start after ~ (1000 - burst) / rate.
    last = max(bucket.reserve() for _ in range(1000))
    assert last == pytest.approx(999 / 50)


def test_several_limits_wait_for_the_slowest() -> None:
    clock = FakeClock()
    limits = RateLimits(clock=clock)
    both = {"relay": 100.0, "campaign:a": 10.0}
    waits = [limits.reserve(both) for _ in range(3)]
    assert waits[0] == 0
    assert waits[2] == pytest.approx(0.2)  # the campaign's 10/s dominates the relay's 100/s


def test_relay_limit_is_shared_between_campaigns() -> None:
    clock = FakeClock()
    limits = RateLimits(clock=clock)
    first = limits.reserve({"relay": 10.0, "campaign:a": 1000.0})
    second = limits.reserve({"relay": 10.0, "campaign:b": 1000.0})
    third = limits.reserve({"relay": 10.0, "campaign:b": 1000.0})
    # One relay bucket (burst 1) spaces both campaigns: 0, then 0.1 s, then 0.2 s.
    assert first == 0 and second == pytest.approx(0.1) and third == pytest.approx(0.2)


def test_rate_change_applies_to_later_reservations() -> None:
    clock = FakeClock()
    limits = RateLimits(clock=clock)
    for _ in range(5):
        limits.reserve({"campaign:a": 10.0})
    limits.reserve({"campaign:a": 1.0})
    assert limits.buckets["campaign:a"].rate == 1.0
    with pytest.raises(ValueError):
        TokenBucket(0)
