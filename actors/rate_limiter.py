"""The rate-limiter actor: token buckets shared by every send task in the cluster.

Keys are a channel's relay cap ("relay" for the SMTP relay, "smsc" for the SMSC: see
`Channel.relay_limit`) and "campaign:<id>" (a campaign's own cap). Tasks reserve the
units of each message (an SMS's parts) and sleep the returned delay.
"""

from __future__ import annotations

import ray

from actors import registry
from app.core.config import Telemetry
from app.core.ratelimit import RateLimits
from app.observability import telemetry


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class RateLimiter:
    def __init__(self) -> None:
        telemetry.setup(Telemetry(), "rate_limiter")  # from the environment
        self.limits = RateLimits()

    async def reserve(self, limits: dict[str, float], n: float = 1.0) -> float:
        return self.limits.reserve(limits, n)

    async def forget(self, key: str) -> None:
        self.limits.forget(key)


def rate_limiter(resources: dict[str, float] | None = None):
    return registry.get_or_create(RateLimiter, registry.RATE_LIMITER, resources=resources)
