"""The webhook actor: sends what `app.integrations.webhooks` stored, signed, retried, in order where
an endpoint asks for it. Off every request path: a slow receiver slows its own lane.

Detached, named `webhooks`, async, restarted on failure. Nothing polls: `poke` (after
an event is stored) reads the due messages; a heap of known due times wakes it for
retries; on (re)start it reads every pending message's time once. Each endpoint has
a lane: up to `max_in_flight` attempts at once, or, when `ordered`, one at a time in
creation order, a failing message holding back the later ones until it is delivered
or dead (while this actor lives; after a restart the order of what was pending is the
order of due times). At least once: a message is marked delivered after its 2xx, so
an actor killed in between sends it again, with the same `webhook-id`.

It also sweeps the outboxes of changed documents (`app.integrations.outbox`) for events whose
writer stopped before handing them on.

Teardown: it ends with the Ray cluster, or `ray.kill(ray.get_actor("webhooks",
namespace="operator-comms"))`; pending messages wait in MongoDB for the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from typing import Any

import httpx
import ray
from pymongo.asynchronous.database import AsyncDatabase

from actors import registry
from actors.metrics import WebhookMetrics
from app.core.config import Settings
from app.core.egress import EgressPolicy, EgressRefused
from app.core.runtime import Runtime
from app.core.statuses import WebhookStatus
from app.integrations import outbox, webhooks
from app.observability import telemetry

log = logging.getLogger("operator_comms.webhooks")
DUE_PAGE = 500
# Due messages are read only while fewer than this wait in the lanes: a backlog behind a
# slow receiver is not read again (the due query returns it first) at every poke.
LOW_WATER = 100
SUCCESS_FLUSH_S = 0.1  # answered messages are recorded together, one write per round
HOLD_S = 86_400.0  # a disabled endpoint's messages wait this long, or until enabled
ERROR_PAUSE_S = 1.0
OUTBOX_SWEEP_S = 10.0


class Lane:
    """One endpoint's queue and the workers that send from it."""

    def __init__(self, sender: WebhookSender, endpoint: dict):
        self.sender, self.endpoint = sender, endpoint
        self.shape = (endpoint.get("ordered", False),
                      endpoint.get("max_in_flight", webhooks.DEFAULT_MAX_IN_FLIGHT))
        self.failing = endpoint.get("failing_since") is not None
        # (0, creation time when ordered, id, tie-breaker, message); (1,) stops a worker
        self.queue: asyncio.PriorityQueue[tuple[Any, ...]] = asyncio.PriorityQueue()
        self.ticket = itertools.count()
        workers = 1 if self.shape[0] else max(1, self.shape[1])
        self.workers = [asyncio.get_running_loop().create_task(self._work())
                        for _ in range(workers)]

    def put(self, message: dict) -> None:
        key = ((message["created_at"].timestamp(), message["_id"]) if self.shape[0]
               else (0.0, ""))
        self.queue.put_nowait((0, *key, next(self.ticket), message))

    def close(self) -> None:
        """Workers finish what is queued, then stop (the endpoint's shape changed)."""
        for _ in self.workers:
            self.queue.put_nowait((1,))

    async def _work(self) -> None:
        while True:
            item = await self.queue.get()
            if len(item) == 1:
                return
            message = item[-1]
            try:
                await self.sender.deliver(self, message)
            except Exception:  # the record stays pending: the next round takes it again
                log.exception("webhook message %s: attempt failed to record", message["_id"])
                self.sender.queued.discard(message["_id"])
                await asyncio.sleep(ERROR_PAUSE_S)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=1000)
class WebhookSender(registry.MadeWithRuntime):
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        self.settings = runtime.settings
        telemetry.setup(runtime.settings, "webhook_sender")
        self.heap: list[float] = []
        self.wake = asyncio.Event()
        self.lanes: dict[str, Lane] = {}
        self.queued: set[str] = set()  # message ids in a lane, its attempt, or unrecorded
        self.held_back = False  # a due read was skipped: the lanes were full
        self.delivered: list[tuple[dict, int, float, Any]] = []  # answered, not yet written
        self.recovered: set[str] = set()  # endpoints answering again after failures
        self.recorded = asyncio.Event()
        self.attempts = {"delivered": 0, "retry": 0, "dead": 0}
        self.client = httpx.AsyncClient(timeout=self.settings.webhook_timeout_s,
                                        follow_redirects=False)
        self.egress = egress_policy(self.settings)
        self.loop_task = asyncio.get_running_loop().create_task(self._run())
        self.recorder = asyncio.get_running_loop().create_task(self._record_deliveries())
        self.sweeper = asyncio.get_running_loop().create_task(self._sweep_outboxes())

    @property
    def db(self) -> AsyncDatabase:
        return self.runtime.database()

    async def poke(self) -> None:
        """Events were stored: read the due messages."""
        self.wake.set()

    async def status(self) -> dict[str, Any]:
        return {"lanes": len(self.lanes), "queued": len(self.queued),
                "attempts": dict(self.attempts),
                "next_retry_in_s": round(self.heap[0] - time.time(), 1) if self.heap else None}

    async def _run(self) -> None:
        while True:
            try:
                for at in await webhooks.pending_times(self.db):
                    heapq.heappush(self.heap, at)
                break
            except Exception:
                log.exception("webhooks: could not read the pending messages")
                await asyncio.sleep(ERROR_PAUSE_S)
        while True:
            self.wake.clear()
            # Retry times this read covers: those due before it starts. Taking the time
            # after it would drop a retry that fell due during the read (or that the timer
            # woke for a moment early), which the read did not see: nothing would wake
            # for that message again until the next event's poke.
            read_at = time.time()
            try:
                full = await self._take_due()
            except Exception:
                log.exception("webhooks: reading due messages failed")
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            if full:
                continue
            while self.heap and self.heap[0] <= read_at:
                heapq.heappop(self.heap)
            now = time.time()
            timeout = self.heap[0] - now if self.heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)

    async def _sweep_outboxes(self) -> None:
        """Events a stopped writer left in a document's outbox (`app.integrations.outbox`):
        at start,
        then every OUTBOX_SWEEP_S (a recovery, not the way events usually arrive)."""
        while True:
            try:
                if await outbox.sweep(self.db):
                    self.wake.set()
            except Exception:
                log.exception("webhooks: the outbox sweep failed")
            await asyncio.sleep(OUTBOX_SWEEP_S)

    async def _take_due(self) -> bool:
        """Queue what is due on its endpoint's lane; True if there may be more."""
        if len(self.queued) >= LOW_WATER:
            self.held_back = True  # `_done` wakes the loop when the lanes drain
            return False
        due = await webhooks.due_messages(self.db, DUE_PAGE)
        fresh = [m for m in due if m["_id"] not in self.queued]
        if not fresh:
            return False
        endpoints = {e["_id"]: e for e in await webhooks.list_endpoints(self.db)}
        held = []
        for message in fresh:
            endpoint = endpoints.get(message["endpoint_id"])
            if endpoint is None or not endpoint.get("enabled", True):
                held.append(message["_id"])
                continue
            self.queued.add(message["_id"])
            self._lane(endpoint).put(message)
        if held:  # a deleted endpoint's messages went with it; a disabled one's wait
            await webhooks.hold_messages(self.db, held, HOLD_S)
        return len(due) == DUE_PAGE and len(fresh) > 0

    def _lane(self, endpoint: dict) -> Lane:
        lane = self.lanes.get(endpoint["_id"])
        shape = (endpoint.get("ordered", False), endpoint.get("max_in_flight", 4))
        if lane is not None and lane.shape != shape:
            lane.close()
            lane = None
        if lane is None:
            lane = self.lanes[endpoint["_id"]] = Lane(self, endpoint)
        lane.endpoint = endpoint  # url and secret as of now
        return lane

    def _done(self, message_id: str) -> None:
        self.queued.discard(message_id)
        if self.held_back and len(self.queued) < LOW_WATER:
            self.held_back = False
            self.wake.set()

    async def deliver(self, lane: Lane, message: dict) -> None:
        """Attempt until delivered or dead when the lane is ordered; else once, the
        retry coming back through the heap. A delivered message stays queued until its
        record is written (`_record_deliveries`), so no due read takes it again."""
        while True:
            outcome, due = await self._attempt(lane, message)
            WebhookMetrics.get().attempts.inc(tags={"outcome": outcome})
            self.attempts[outcome] += 1
            if outcome == "delivered":
                return
            if outcome == "dead":
                self._done(message["_id"])
                return
            message["attempts"] = message.get("attempts", 0) + 1
            if not lane.shape[0]:
                self._done(message["_id"])
                heapq.heappush(self.heap, due.timestamp())
                self.wake.set()  # the sleeper may need to wake earlier
                return
            await asyncio.sleep(max(0.0, due.timestamp() - time.time()))

    async def _record_deliveries(self) -> None:
        """Write what was answered, every SUCCESS_FLUSH_S, in one bulk write."""
        while True:
            await self.recorded.wait()
            await asyncio.sleep(SUCCESS_FLUSH_S)
            self.recorded.clear()
            taken, self.delivered = self.delivered, []
            recovered, self.recovered = self.recovered, set()
            try:
                await webhooks.record_successes(self.db, taken, sorted(recovered))
            except Exception:  # kept for the next round; an actor killed meanwhile sends
                log.exception("webhooks: recording %d deliveries failed", len(taken))
                self.delivered = taken + self.delivered  # them again, with the same ids
                self.recovered |= recovered
                self.recorded.set()
                await asyncio.sleep(ERROR_PAUSE_S)
                continue
            for message, *_ in taken:
                self._done(message["_id"])

    async def _attempt(self, lane: Lane, message: dict) -> tuple[str, Any]:
        endpoint = lane.endpoint
        body = webhooks.body_of(message)
        headers = webhooks.signed_headers(endpoint["secret"], message["_id"],
                                          webhooks.now(), body)
        started = time.perf_counter()
        try:
            target = await self.egress.resolve(endpoint["url"])  # again: DNS may change
            reply = await self.client.post(
                target.url, content=body, headers={**headers, "host": target.netloc},
                extensions={"sni_hostname": target.host})
        except EgressRefused as exc:
            code, error = None, f"refused: {exc}"[:300]
        except httpx.HTTPError as exc:
            code, error = None, f"{type(exc).__name__}: {exc}"[:300]
        else:
            if 200 <= reply.status_code < 300:
                self.delivered.append((message, reply.status_code,
                                       (time.perf_counter() - started) * 1000, webhooks.now()))
                if lane.failing:
                    lane.failing = False
                    self.recovered.add(endpoint["_id"])
                self.recorded.set()
                return "delivered", None
            code, error = reply.status_code, f"HTTP {reply.status_code}"
        lane.failing = True
        status, due = await webhooks.record_failure(
            self.db, message, code, error, self.settings.webhook_retry_s,
            self.settings.webhook_disable_after_s)
        return ("dead", None) if status == WebhookStatus.DEAD else ("retry", due)


def egress_policy(settings: Settings) -> EgressPolicy:
    """Where webhooks may go: the operator's allow-list, never the cluster's own nodes."""
    own = [node["NodeManagerAddress"] for node in ray.nodes() if node.get("Alive")]
    return EgressPolicy(settings.egress_allow, own)


def webhook_sender(runtime: Runtime, replace_older: bool = False):
    """The cluster's webhook actor, created on first use (idempotent); with
    `replace_older`, replaced if it runs with another runtime (the launcher)."""
    return registry.get_or_create(
        WebhookSender, registry.WEBHOOKS, runtime, resources=runtime.settings.actor_resources,
        fingerprint=runtime.fingerprint() if replace_older else None)


_sender = registry.Named(registry.WEBHOOKS)


def poke() -> None:
    """Tell the webhook actor that events were stored (if it runs; it reads them at
    start otherwise). Does not wait; the handle is looked up again every few seconds
    (`registry.Named`)."""
    handle = _sender()
    if handle is not None:
        handle.poke.remote()


async def hand_on(db: AsyncDatabase, collection: str, doc_id: str) -> int:
    """Hand on the events a change left in its document's outbox (`app.integrations.outbox`) and
    wake the sender. Never raises: what the database would not store stays in the
    outbox, for the sweep."""
    try:
        stored = await outbox.hand_on(db, collection, doc_id)
    except Exception:
        log.warning("%s %s: events left for the outbox sweep", collection, doc_id,
                    exc_info=True)
        return 0
    if stored:
        poke()
    return stored


async def publish(db: AsyncDatabase, event_type: str, data: dict[str, Any],
                  key: str | None = None) -> int:
    """Store an event for the endpoints that want it and wake the sender. Never raises:
    the change it reports has happened; an event the database would not store is logged
    (the one way an event is lost: the database refused its write)."""
    try:
        stored = await webhooks.emit(db, event_type, data, key=key)
    except Exception:
        log.exception("webhook event %s could not be stored", event_type)
        return 0
    if stored:
        poke()
    return stored
