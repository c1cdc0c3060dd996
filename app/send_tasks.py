"""The Ray send task: a plain `@ray.remote` function that runs one batch with asyncio.

It asks for a fraction of a CPU (sending is I/O-bound), so many fit on a small
machine; Ray retries it if its worker dies, and the claim token makes the retry pick
up only what the dead attempt had not recorded. The only Ray import in `app/`.
"""

from __future__ import annotations

import asyncio

import ray
from ray.util.metrics import Counter, Gauge, Histogram

from app.sending import BatchJob, run_batch

RATE_LIMITER = "rate-limiter"
NAMESPACE = "operator-comms"


class SendMetrics:
    """Metrics of the send path, created once per worker process."""

    _instance: SendMetrics | None = None

    def __init__(self) -> None:
        self.messages = Counter("comms_messages_total", description="Delivery outcomes.",
                                tag_keys=("status",))
        self.latency = Histogram("comms_send_latency_ms", description="SMTP send latency.",
                                 boundaries=[5, 10, 25, 50, 100, 250, 500, 1000, 5000],
                                 tag_keys=())
        self.in_flight = Gauge("comms_send_tasks_in_flight",
                               description="Send tasks in flight per campaign.",
                               tag_keys=("campaign",))

    @classmethod
    def get(cls) -> SendMetrics:
        if cls._instance is None:
            cls._instance = SendMetrics()
        return cls._instance

    def observe(self, status: str, latency_ms: float | None) -> None:
        self.messages.inc(1, tags={"status": status})
        if latency_ms is not None:
            self.latency.observe(latency_ms)


async def _reserve(limits: dict[str, float], n: float) -> float:
    limiter = ray.get_actor(RATE_LIMITER, namespace=NAMESPACE)
    return await limiter.reserve.remote(limits, n)


@ray.remote(max_retries=3, retry_exceptions=False)
def send_batch(job: BatchJob) -> dict:
    metrics = SendMetrics.get()
    node_id = ray.get_runtime_context().get_node_id()
    return asyncio.run(run_batch(job, node_id=node_id, reserve=_reserve,
                                 observe=metrics.observe))
