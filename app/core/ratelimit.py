"""Token buckets with an injectable clock: reserve now, learn how long to wait; or
take if there is a token, and learn when to come back.

A reservation always succeeds and returns the delay before the tokens are really
there, so callers sleep once instead of polling; the bucket goes into debt, which
keeps concurrent callers fairly spaced (the send path's throttling).

A route's bucket (a relay, an SMSC) can adapt (`AdaptiveRate`): the senders tell it,
with their next reservation, how many answers were clean and how many said "slow
down"; it drops multiplicatively on the latter and climbs additively on the former,
never above the operator's ceiling.

`take` never goes into debt: it is for refusing work (abuse limits on the public
endpoints, `KeyedLimits`), where a refused caller must not push the next one back.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate = rate_per_s
        self.burst = burst if burst is not None else max(1.0, rate_per_s / 10)
        self.clock = clock
        self.tokens = self.burst
        self.updated = clock()

    def reserve(self, n: float = 1.0) -> float:
        """Take n tokens; return the seconds to wait before using them."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def take(self, n: float = 1.0) -> float:
        """Take n tokens if they are there (0.0); else take nothing and return the
        seconds until they will be."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= n:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate

    def set_rate(self, rate_per_s: float) -> None:
        self.reserve(0)  # settle what accrued at the old rate
        self.rate = rate_per_s
        self.burst = max(1.0, rate_per_s / 10)
        self.tokens = min(self.tokens, self.burst)


class AdaptiveRate:
    """A route's rate between a floor and the operator's ceiling (AIMD, as TCP does):
    a throttling answer multiplies it by DECREASE, at most once per HOLD_S (answers to
    messages sent before a cut say nothing new about the cut rate); clean answers raise
    it by INCREASE of the ceiling per second they keep coming."""

    DECREASE = 0.7
    HOLD_S = 1.0
    INCREASE = 0.05  # of the ceiling, per second of clean answers
    FLOOR = 0.02  # of the ceiling

    def __init__(self, ceiling: float, clock: Callable[[], float] = time.monotonic):
        self.ceiling = self.rate = ceiling
        self.clock = clock
        self.cut_at = float("-inf")
        self.raised_at = clock()
        self.throttled = self.clean = 0  # answers heard, for the dashboard and metrics
        self.cuts = 0
        self.last_throttled_at: float | None = None

    def heard(self, clean: int, throttled: int) -> None:
        now = self.clock()
        self.clean += clean
        self.throttled += throttled
        if throttled:
            self.last_throttled_at = now
            if now - self.cut_at >= self.HOLD_S:
                self.rate = max(self.ceiling * self.FLOOR, self.rate * self.DECREASE)
                self.cut_at = self.raised_at = now
                self.cuts += 1
            return
        if clean:
            self.rate = min(self.ceiling, self.rate + self.ceiling * self.INCREASE * max(
                0.0, now - self.raised_at))
        self.raised_at = now

    def set_ceiling(self, ceiling: float) -> None:
        self.ceiling = ceiling
        self.rate = min(self.rate, ceiling)


class RateLimits:
    """Buckets by key ("relay", "campaign:<id>"), each reservation across several; a
    key that hears answers (`reserve`'s `heard`) adapts its rate (`AdaptiveRate`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}
        self.adaptive: dict[str, AdaptiveRate] = {}

    def reserve(self, limits: dict[str, float], n: float = 1.0,
                heard: dict[str, tuple[int, int]] | None = None) -> float:
        """Reserve n units under every limit; `heard`: per key, the (clean, throttled)
        answers its caller got since its last reservation."""
        for key, (clean, throttled) in (heard or {}).items():
            ceiling = limits.get(key)
            if ceiling is None:
                continue
            route = self.adaptive.get(key)
            if route is None:
                route = self.adaptive[key] = AdaptiveRate(ceiling, self.clock)
            elif route.ceiling != ceiling:
                route.set_ceiling(ceiling)
            route.heard(clean, throttled)
        waits = [0.0]
        for key, ceiling in limits.items():
            route = self.adaptive.get(key)
            rate = min(ceiling, route.rate) if route is not None else ceiling
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = TokenBucket(rate, clock=self.clock)
            elif bucket.rate != rate:
                bucket.set_rate(rate)
            waits.append(bucket.reserve(n))
        return max(waits)

    def routes(self) -> dict[str, dict[str, float | int | None]]:
        """Each adapting route: its rate now, its ceiling, what it heard."""
        now = self.clock()
        return {key: {"rate_per_s": round(r.rate, 2), "ceiling_per_s": r.ceiling,
                      "throttled": r.throttled, "clean": r.clean, "cuts": r.cuts,
                      "last_throttled_s_ago": None if r.last_throttled_at is None
                      else round(now - r.last_throttled_at, 1)}
                for key, r in self.adaptive.items()}

    def forget(self, key: str) -> None:
        self.buckets.pop(key, None)
        self.adaptive.pop(key, None)


class KeyedLimits:
    """One bucket per key (a client address, a session), `per_minute` requests with a
    burst of a minute's worth, for at most `max_keys` keys: the least recently seen key
    is forgotten first (it comes back with a full bucket), so memory stays bounded
    whatever the number of clients. `per_minute` 0 turns the limit off."""

    def __init__(self, per_minute: int, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.max_keys = max_keys
        self.clock = clock
        self.buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, key: str) -> float:
        """0.0 if `key` may go on (and count it); else the seconds to wait."""
        if self.per_minute <= 0:
            return 0.0
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.per_minute / 60, self.per_minute,
                                                     clock=self.clock)
            if len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
        else:
            self.buckets.move_to_end(key)
        return bucket.take()
