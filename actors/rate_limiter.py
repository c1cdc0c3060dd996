"""The rate-limiter actor: token buckets shared by every send task in the cluster.

Keys are a channel's relay cap ("relay" for the SMTP relay, "smsc" for the SMSC: see
`Channel.relay_limit`) and "campaign:<id>" (a campaign's own cap). Tasks reserve the
units of each message (an SMS's parts) and sleep the returned delay. With each
reservation a task says how the route answered since its last one (clean, "slow
down"), and the route's rate adapts (`app.core.ratelimit.AdaptiveRate`); `routes()`
shows each route's rate for the dashboard, and the metrics carry it. Workers whose
breaker takes a route out of service, or hears it again, say so (`route_event`), and
`routes()` shows that too (`app.channels.routing`).
"""

from __future__ import annotations

import ray

from actors import registry
from actors.metrics import RouteMetrics
from app.channels.routing import RouteHealth
from app.core.config import Telemetry
from app.core.ratelimit import RateLimits
from app.observability import telemetry


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class RateLimiter:
    def __init__(self) -> None:
        telemetry.setup(Telemetry(), "rate_limiter")  # from the environment
        self.limits = RateLimits()
        self.health = RouteHealth()

    async def reserve(self, limits: dict[str, float], n: float = 1.0,
                      heard: dict[str, tuple[int, int]] | None = None) -> float:
        wait = self.limits.reserve(limits, n, heard)
        if heard:
            RouteMetrics.get().observe(self.limits.routes(), heard)
        return wait

    async def route_event(self, key: str, in_service: bool, error: str | None) -> None:
        """A worker's breaker took the route out, or heard it answer again."""
        self.health.heard(key, in_service, error)
        RouteMetrics.get().in_service(key, in_service)

    async def routes(self) -> dict:
        """Each route heard of: its adapted rate (with a ceiling), its health."""
        rates, health = self.limits.routes(), self.health.view()
        return {key: {**rates.get(key, {}), **health.get(key, {})}
                for key in {*rates, *health}}

    async def forget(self, key: str) -> None:
        self.limits.forget(key)


def rate_limiter(resources: dict[str, float] | None = None):
    return registry.get_or_create(RateLimiter, registry.RATE_LIMITER, resources=resources)
