"""Token buckets with an injectable clock: reserve now, learn how long to wait; or
take if there is a token, and learn when to come back.

A reservation always succeeds and returns the delay before the tokens are really
there, so callers sleep once instead of polling; the bucket goes into debt, which
keeps concurrent callers fairly spaced (the send path's throttling).

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


class RateLimits:
    """Buckets by key ("relay", "campaign:<id>"), each reservation across several."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}

    def reserve(self, limits: dict[str, float], n: float = 1.0) -> float:
        waits = [0.0]
        for key, rate in limits.items():
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = TokenBucket(rate, clock=self.clock)
            elif bucket.rate != rate:
                bucket.set_rate(rate)
            waits.append(bucket.reserve(n))
        return max(waits)

    def forget(self, key: str) -> None:
        self.buckets.pop(key, None)


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
