"""The Ray send task: a plain `@ray.remote` function that runs one batch on its worker
process's event loop. The only Ray import in `app/`.

It asks for a fraction of a CPU (sending is I/O-bound), so many fit on a small
machine. Ray reuses worker processes, so the loop lives on in a thread of the
worker, and with it the process's MongoDB client and its pooled SMTP connections:
a batch pays no connect, handshake or login that an earlier batch already paid.

Ray starts worker processes a few at a time per node (a second or two of CPU each, to
import Python, Ray and the send path), so a launch of many tasks would wait for them.
`warm_send_worker` starts `send_warm_workers` of them ahead of need (the dispatcher
runs it when the app starts), and `worker_pool_environment` tells a Ray started here to
keep that many idle instead of ending those beyond its CPU count after a second.

A send task is never retried by Ray: a retry would run under the same claim as a run
that may still be sending (a worker cut off rather than dead). If its worker dies, the
batch's lease lapses by the database's clock, the runner's sweep requeues it, and a new
run with a claim of its own reads what is recorded and sends only the rest.
When the batch's last recipient is taken, the task tells the
campaign runner (a fire-and-forget call on its handle, in the job), which starts the
next batch then. `ray.cancel` (pause, cancel) raises
KeyboardInterrupt here, in the task's thread: the batch is asked to stop, finishes
the messages on the wire, records them and gives the rest of the batch back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time

import ray
from ray.util.metrics import Counter, Gauge, Histogram

from app.campaigns.batch import BatchControl, BatchJob, BatchSummary
from app.campaigns.rounds import record_alone
from app.campaigns.sending import run_batch
from app.core.config import Settings
from app.core.statuses import AttemptOutcome
from app.observability import logs, telemetry, tracing

log = logging.getLogger("operator_comms.sending")


class SendMetrics:
    """Metrics of the send path, created once per worker process."""

    _instance: SendMetrics | None = None
    EXPORTED = {"comms_messages_total": "counter", "comms_send_latency_ms": "histogram",
                "comms_send_tasks_in_flight": "gauge"}

    def __init__(self) -> None:
        self.messages = Counter("comms_messages_total", description="Delivery outcomes.",
                                tag_keys=("status", "channel"))
        self.latency = Histogram("comms_send_latency_ms", description="SMTP send latency.",
                                 boundaries=[5, 10, 25, 50, 100, 250, 500, 1000, 5000],
                                 # an email's SMTP transaction, or an SMS's submits
                                 tag_keys=())
        self.in_flight = Gauge("comms_send_tasks_in_flight",
                               description="Send tasks in flight per campaign.",
                               tag_keys=("campaign",))

    @classmethod
    def get(cls) -> SendMetrics:
        if cls._instance is None:
            cls._instance = SendMetrics()
        return cls._instance

    def observe_batch(self, summary: BatchSummary) -> None:
        channel = summary.channel
        for status, n in summary.counts.items():
            self.messages.inc(n, tags={"status": status, "channel": channel})
        if summary.retries:
            self.messages.inc(summary.retries, tags={"status": AttemptOutcome.RETRY,
                                                     "channel": channel})
        for latency_ms in summary.latencies:
            self.latency.observe(latency_ms)


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def worker_loop() -> asyncio.AbstractEventLoop:
    """The event loop of this worker process, running in a daemon thread."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="send-loop", daemon=True).start()
        return _loop


def _reserve_with(limiter):
    async def reserve(limits: dict[str, float], n: float,
                      heard: dict[str, tuple[int, int]] | None = None) -> float:
        return await limiter.reserve.remote(limits, n, heard)  # (the answers ride along)
    return reserve


def _report_with(limiter):
    def report(route: str, in_service: bool, error: str | None) -> None:
        limiter.route_event.remote(route, in_service, error)  # (a transition: rare)
    return report


def _draining_notice(job: BatchJob):
    """Tells the runner the batch drains (fire and forget: nothing waits for it)."""
    def notify() -> None:
        job.runner.draining.remote(job.batch_id, job.claim)
    return notify


async def _batch(job: BatchJob, **context) -> BatchSummary:
    """The batch, with its campaign on the log lines and, when tracing, in a span under
    the runner's (a task of its own on the loop: what it binds stays its own)."""
    logs.bind(campaign_id=job.campaign_id)
    if job.trace is None:
        summary = await run_batch(job, **context)
    else:
        with tracing.span("send.batch", job.trace, kind=tracing.SpanKind.CONSUMER,
                          campaign=job.campaign_id, batch=job.batch_id, attempt=job.attempt,
                          recipients=len(job.customer_ids), node=context["node_id"]) as span:
            summary = await run_batch(job, **context)
            span.set_attributes({f"sent.{status}": n for status, n in summary.counts.items()})
    if log.isEnabledFor(logging.INFO):
        log.info("batch %s: %s", job.batch_id, ", ".join(
            f"{n} {status}" for status, n in summary.counts.items()) or "nothing to send")
    return summary


@ray.remote(max_retries=0)
def warm_send_worker(settings: Settings, until: float) -> int:
    """Ready a send worker process ahead of need (this module, and the send path it
    imports, loaded; its loop thread running) and hold it until `until`, so that each of
    the warm tasks submitted together gets a process of its own. Its pid."""
    worker_loop()
    telemetry.setup(settings, "send_task")
    time.sleep(max(0.0, until - time.time()))
    return os.getpid()


def worker_pool_environment(settings: Settings, num_cpus: int) -> dict[str, str]:
    """For a Ray started here: keep the warm send workers idle (Ray keeps as many idle
    workers per node as it has CPUs free, by default, and ends the others after a
    second). On a cluster the same variable goes in the env file `ray start` reads."""
    if settings.send_warm_workers <= num_cpus:
        return {}
    return {"RAY_num_workers_soft_limit": str(settings.send_warm_workers)}


@ray.remote(max_retries=0, retry_exceptions=False)  # every run has a claim of its own
def send_batch(job: BatchJob) -> BatchSummary:
    control = BatchControl()
    reserve = _reserve_with(job.limiter) if job.limiter is not None else None
    report = _report_with(job.limiter) if job.limiter is not None else None
    node_id = ray.get_runtime_context().get_node_id()
    loop = worker_loop()
    telemetry.setup(job.settings, "send_task")  # before the first database client
    on_draining = _draining_notice(job) if job.runner is not None else None
    future = asyncio.run_coroutine_threadsafe(
        _batch(job, node_id=node_id, reserve=reserve, control=control,
               on_draining=on_draining, report=report), loop)
    try:
        summary = future.result()
    except KeyboardInterrupt:  # ray.cancel: stop cleanly, count what went out, report
        control.request_stop()
        summary = future.result()
        asyncio.run_coroutine_threadsafe(record_alone(job, summary), loop).result()
        summary.counted = True
    SendMetrics.get().observe_batch(summary)
    summary.latencies = []  # observed here; no need to ship them to the runner
    return summary
