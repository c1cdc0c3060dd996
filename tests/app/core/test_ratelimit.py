"""Token buckets on a controllable clock: no sleeping, no timing assertions."""

from __future__ import annotations

import pytest

from app.core.ratelimit import AdaptiveRate, KeyedLimits, RateLimits, TokenBucket


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


def test_take_refuses_without_going_into_debt() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate_per_s=2, burst=2, clock=clock)
    assert bucket.take() == 0 and bucket.take() == 0
    assert bucket.take() == pytest.approx(0.5)
    assert bucket.take() == pytest.approx(0.5)  # refusals cost nothing
    clock.advance(0.5)
    assert bucket.take() == 0
    assert bucket.take() == pytest.approx(0.5)


def test_keyed_limits_hold_each_key_to_its_own_minute() -> None:
    clock = FakeClock()
    limits = KeyedLimits(per_minute=3, clock=clock)
    assert [limits.check("10.0.0.1") for _ in range(3)] == [0, 0, 0]
    assert limits.check("10.0.0.1") == pytest.approx(20.0)  # one request per 20 s
    assert limits.check("10.0.0.2") == 0  # another client is not held back
    clock.advance(20)
    assert limits.check("10.0.0.1") == 0 and limits.check("10.0.0.1") > 0


def test_keyed_limits_forget_the_least_recent_key_beyond_their_bound() -> None:
    clock = FakeClock()
    limits = KeyedLimits(per_minute=1, max_keys=2, clock=clock)
    limits.check("a")
    limits.check("b")
    limits.check("a")  # a is refused, and now the most recent
    limits.check("c")  # forgets b
    assert set(limits.buckets) == {"a", "c"}
    assert limits.check("a") > 0 and limits.check("b") == 0


def test_keyed_limits_of_zero_are_off() -> None:
    limits = KeyedLimits(per_minute=0)
    assert all(limits.check("x") == 0 for _ in range(1000)) and not limits.buckets


def test_a_route_slows_down_multiplicatively_and_recovers_additively() -> None:
    clock = FakeClock()
    route = AdaptiveRate(100.0, clock)
    route.heard(clean=0, throttled=3)
    assert route.rate == 70.0 and route.cuts == 1
    clock.advance(0.5)
    route.heard(clean=0, throttled=5)  # within the hold: answers to the old rate
    assert route.rate == 70.0
    clock.advance(1.0)
    route.heard(clean=0, throttled=1)
    assert route.rate == 49.0 and route.throttled == 9
    clock.advance(2.0)
    route.heard(clean=10, throttled=0)  # two seconds of clean answers: +5% a second
    assert route.rate == 59.0
    clock.advance(100.0)
    route.heard(clean=1, throttled=0)
    assert route.rate == 100.0  # never above the operator's ceiling
    for _ in range(50):
        clock.advance(1.0)
        route.heard(clean=0, throttled=1)
    assert route.rate == 2.0  # nor below its floor


def test_limits_use_the_adapted_rate_of_a_route_that_hears_answers() -> None:
    clock = FakeClock()
    limits = RateLimits(clock)
    assert limits.reserve({"relay": 10.0}, 1) == 0.0
    assert limits.routes() == {}  # nothing heard: a fixed rate
    limits.reserve({"relay": 10.0}, 1, {"relay": (0, 1)})
    route = limits.routes()["relay"]
    assert (route["rate_per_s"], route["ceiling_per_s"], route["throttled"]) == (7.0, 10.0, 1)
    assert limits.buckets["relay"].rate == 7.0
    limits.reserve({"relay": 5.0}, 1, {"relay": (1, 0)})  # the operator lowered it
    assert limits.routes()["relay"]["rate_per_s"] == 5.0
    limits.forget("relay")
    assert limits.routes() == {}
