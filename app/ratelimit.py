"""Token buckets with an injectable clock: reserve now, learn how long to wait.

A reservation always succeeds and returns the delay before the tokens are really
there, so callers sleep once instead of polling; the bucket goes into debt, which
keeps concurrent callers fairly spaced.
"""

from __future__ import annotations

import time
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
