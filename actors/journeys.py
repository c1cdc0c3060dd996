"""The journey shards: N detached actors (`journey-shard-<i>`, N =
`COMMS_JOURNEY_SHARDS`, spread over the nodes), each holding the timers and waits of
the customers hashed to it (`app.journeys.enrollments`).

A shard's timers are one heap served by one sleeper; due timers fire in rounds of up
to ROUND_MAX, a few database commands a round (`app.journeys.walking`). Events come
in batches (`hand_to_shards`, stored first by the caller) and are walked in rounds as
they queue. MongoDB is the record: a shard (re)started, on whatever node, reloads its
customers' timers and fires the overdue ones once (each move is a compare-and-swap),
makes what outboxes a kill left, and sweeps events it never heard.

Teardown: they end with the Ray cluster, or `ray.kill` of each; their customers wait in
MongoDB for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import deque
from datetime import timedelta
from typing import Any

import ray
from pymongo.asynchronous.database import AsyncDatabase

from actors import registry
from actors.marketing import offer_maker
from actors.metrics import JourneyMetrics
from app.core.runtime import Runtime
from app.journeys import enrollments
from app.journeys.walking import ShardWork, Timer
from app.observability import telemetry, tracing

log = logging.getLogger("operator_comms.journeys")
ROUND_MAX = 500
HEAR_MAX = 2_000
ROUNDS_AT_ONCE = 4
SWEEP_S = 5.0
RETRY_S = 2.0


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=1000)
class JourneyShard(registry.MadeWithRuntime):
    def __init__(self, runtime: Runtime, shard: int, shards: int):
        self.runtime = runtime
        telemetry.setup(runtime.settings, f"journey-shard-{shard}")
        self.work = ShardWork(runtime, shard, shards, offers=offer_maker(runtime))
        self.heap: list[Timer] = []
        self.wake = asyncio.Event()
        self.inbox: list[dict[str, Any]] = []
        self.heard = asyncio.Event()
        self.loaded = asyncio.Event()
        self.rounds = asyncio.Semaphore(ROUNDS_AT_ONCE)
        self.lateness_ms: deque[float] = deque(maxlen=100_000)
        self.fired = 0
        self.started = time.monotonic()
        self.load_s: float | None = None
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._keep(self._start_then_sleep)),
                      loop.create_task(self._keep(self._hearer)),
                      loop.create_task(self._keep(self._sweeper))]

    async def hear(self, events: list[dict[str, Any]]) -> int:
        """Stored events for this shard's customers: walked in the next round (an
        event handed on with its trace is a span of that trace here)."""
        for event in events:
            if event.get("trace"):
                with tracing.span("journeys.heard", event.pop("trace"), event=event["type"],
                                  session=event.get("session_id")):
                    log.info("journey shard %d: %s %s heard", self.work.shard,
                             event["type"], event["_id"])
        self.inbox.extend(events)
        self.heard.set()
        return len(events)

    async def refresh(self, recount: bool = False) -> None:
        """A journey was published, paused or archived: read the published ones now
        (`recount`: and count who is where again, after an archive)."""
        await self.work.refresh(force=True)
        if recount:
            await self.work.recount()

    async def ready(self) -> bool:
        """True once the shard has loaded its customers (waits for it)."""
        await self.loaded.wait()
        return True

    async def stats(self) -> dict[str, Any]:
        """Timers held, fired, lateness, the load's time, memory (benchmarks, the view)."""
        lateness = sorted(self.lateness_ms)

        def pct(p: float) -> float | None:
            return round(lateness[min(len(lateness) - 1, int(p * len(lateness)))], 2) \
                if lateness else None

        return {"shard": self.work.shard, "timers": len(self.heap), "fired": self.fired,
                "load_s": self.load_s, "rss_mb": telemetry.rss_mb(), **self.work.counts,
                "lateness_p50_ms": pct(0.5), "lateness_p99_ms": pct(0.99),
                "node": ray.get_runtime_context().get_node_id()}

    async def _keep(self, loop_body) -> None:
        while True:
            try:
                await loop_body()
            except Exception:
                log.exception("journey shard %d: %s failed; again in %.0f s",
                              self.work.shard, loop_body.__name__, RETRY_S)
                await asyncio.sleep(RETRY_S)

    async def _start_then_sleep(self) -> None:
        if not self.loaded.is_set():
            self._push(await self.work.start())
            self.load_s = round(time.monotonic() - self.started, 3)
            self.loaded.set()
            log.info("journey shard %d: %d timers loaded in %.1f s", self.work.shard,
                     len(self.heap), self.load_s)
        while True:
            self.wake.clear()
            now = time.time()
            while self.heap and self.heap[0][0] <= now:
                due = []
                while self.heap and self.heap[0][0] <= now and len(due) < ROUND_MAX:
                    due.append(heapq.heappop(self.heap))
                await self.rounds.acquire()
                asyncio.get_running_loop().create_task(self._fire(due))
                now = time.time()
            delay = SWEEP_S if not self.heap else max(0.0, self.heap[0][0] - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), delay)

    async def _fire(self, due: list[Timer]) -> None:
        try:
            self._push(await self.work.fire(due))
            at = time.time()
            self.lateness_ms.extend(max(0.0, (at - when) * 1000) for when, _, _ in due)
            self.fired += len(due)
        except Exception:
            log.exception("journey shard %d: %d timers failed; again in %.0f s",
                          self.work.shard, len(due), RETRY_S)
            self._push([(time.time() + RETRY_S, _id, seq) for _, _id, seq in due])
        finally:
            self.rounds.release()

    async def _hearer(self) -> None:
        await self.loaded.wait()
        while True:
            await self.heard.wait()
            self.heard.clear()
            while self.inbox:
                events, self.inbox = self.inbox[:HEAR_MAX], self.inbox[HEAR_MAX:]
                try:
                    self._push(await self.work.hear(events))
                except Exception:
                    log.exception("journey shard %d: %d events failed; the sweep takes "
                                  "them", self.work.shard, len(events))

    async def _sweeper(self) -> None:
        await self.loaded.wait()
        while True:
            metrics = JourneyMetrics.get()
            metrics.at(self.work.shard, self.work.at)
            metrics.moved(self.work.take_ways())
            await asyncio.sleep(SWEEP_S)
            await self.work.refresh()
            left = await enrollments.untaken_events(
                self.work.db, self.work.buckets,
                enrollments.now() - timedelta(seconds=SWEEP_S))
            if left:
                await self.hear(left)
            await self.work.flush_outboxes()

    def _push(self, timers: list[Timer]) -> None:
        for timer in timers:
            heapq.heappush(self.heap, timer)
        if timers:
            self.wake.set()


def shard_name(shard: int) -> str:
    return registry.JOURNEY_SHARD.format(shard)


def journey_shards(runtime: Runtime, replace_older: bool = False) -> list[Any]:
    """The cluster's journey shards, created on first use (idempotent), spread over
    the nodes; with `replace_older`, replaced if made with another runtime."""
    count = runtime.settings.journey_shards
    return [registry.get_or_create(
        JourneyShard, shard_name(n), runtime, n, count,
        resources=runtime.settings.actor_resources,
        fingerprint=runtime.fingerprint() if replace_older else None, spread=True)
        for n in range(count)]


_NAMED: dict[int, registry.Named] = {}  # this process's handles, looked up again now and then


def hand_to_shards(events: list[dict[str, Any]], shards: int) -> int:
    """Give stored events to their shards, a batch each (not waited for: a shard
    that is down sweeps them when it is back). Returns how many shards were called."""
    by_shard: dict[int, list[dict[str, Any]]] = {}
    for event in events:
        by_shard.setdefault(enrollments.shard_of(event["customer_id"], shards), []).append(
            event)
    called = 0
    for shard, batch in by_shard.items():
        handle = _NAMED.setdefault(shard, registry.Named(shard_name(shard)))()
        if handle is not None:
            handle.hear.remote(batch)
            called += 1
    return called


async def take_events(db: AsyncDatabase, events: list[dict[str, Any]], shards: int,
                      trace: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Keep these events (stored first: what is acknowledged is kept), then hand them
    to their shards (with `trace`, the caller's trace context); returns those new (an
    id kept before is ignored)."""
    stored = await enrollments.store_events(db, events)
    hand_to_shards([{**e, "trace": trace} for e in stored] if trace else stored, shards)
    return stored
