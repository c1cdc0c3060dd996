"""Sending one batch of a campaign: hold the claim's lease, read the recipients, render, send
over pooled SMTP connections, record the outcomes in bulk, say how the batch closes. Pure
asyncio; the Ray task in `app.campaigns.send_tasks` runs it on its worker process's loop.

Database work per batch, not per message: a fresh batch of 100 costs one read (who of
its customers unsubscribed since the runner read them) and an `insert` per flush of
outcomes. A webhook endpoint that listens for delivery events (the runner says which,
in the job) adds one insert per flush, an SMS batch its parts. The close (what is left
of the batch, at which attempt) goes back to the runner in the summary, with the
counts and roll-up increments, and the runner writes it with the counters and the
roll-ups of every task that finished in its round, in one command; it also made the
batch's insert. A fresh batch sends under the lease that insert began, so it needs no
command to start; a task that starts late renews first. A run that dies before its
close is written leaves its batch claimed until the lease runs out; the rerun then
finds every outcome recorded and sends nothing again.
Outcomes are flushed when `send_flush_every` have queued up, when the oldest has
waited `send_flush_s`, and at the end; a connection waits while twice
`send_flush_every` are unwritten. So a process killed mid-batch leaves at most that
many messages sent but unrecorded (fewer where the batch is smaller); a rerun sends
those again, with the same Message-ID, and nothing else. Lower `send_flush_every`
trades database commands for a smaller window.

When its last recipient is taken, a batch tells the runner (`on_draining`), which
starts the next batch then, while the last messages are on the wire and their
outcomes are written: a batch boundary no longer leaves connections idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.audience.customers import SEND_FIELDS, unsubscribed_since
from app.campaigns import batches, ledger
from app.campaigns import records as campaigns
from app.channels.base import Channel, SendOutcome
from app.channels.registry import channel_named
from app.channels.templates import CompiledTemplates, TemplateProblem, compile_templates
from app.core import bulk, rollups
from app.core.config import Settings
from app.core.ids import delivery_id
from app.core.runtime import Runtime
from app.core.statuses import AttemptOutcome, DeliveryStatus
from app.integrations import webhooks

log = logging.getLogger("operator_comms.sending")
SENT, FAILED, AUTH = AttemptOutcome.SENT, AttemptOutcome.FAILED, AttemptOutcome.AUTH
Reserve = Callable[[dict[str, float], float], Awaitable[float]]
Draining = Callable[[], None]
SKIPPED = DeliveryStatus.SKIPPED  # the outcome of a recipient who is gone
CLOCK_MARGIN = timedelta(seconds=60)
RENEW_RETRY_S = 0.5


@dataclass
class BatchJob:
    """One batch as the runner hands it to a task: its recipients and its claim."""

    campaign_id: str
    batch_id: str
    claim: str
    attempt: int
    customer_ids: list[str]
    runtime: Runtime
    templates: dict[str, str | None]
    connections: int
    # Created by the runner for this claim, and submitted without Ray retries (a worker
    # that dies fails the task; the runner claims the batch anew): nothing of it can be
    # recorded yet, so the task reads no records. Any other run reads them first.
    fresh: bool = False
    # What is left of the claim's lease when the runner hands the job over, by the
    # runner's monotonic clock (the lease's end is the database's; see `BatchRun`).
    # None: the task renews before it sends.
    lease_left_s: float | None = None
    # The recipients' documents as the runner read them with the audience page, and
    # when; the task then only asks who unsubscribed since. None: the task reads them.
    customers: list[dict] | None = None
    customers_read_at: datetime | None = None
    limits: dict[str, float] = field(default_factory=dict)
    limiter: Any = None  # the rate limiter's handle, used by the task's `reserve`
    # The campaign runner's handle: told when every message of the batch is taken (the
    # last ones on the wire), so the next batch's dispatch overlaps them.
    runner: Any = None
    trace: dict[str, str] | None = None  # the runner's span: the batch's goes under it
    tracking: dict[str, bool] | None = None  # opens, clicks (app.channels.email.tracking)
    # The endpoints that want delivery.status events, as the runner knows them (told of
    # every change through the API); None: this process reads them (app.integrations.webhooks).
    listeners: list[str] | None = None
    channel: str = "email"  # the campaign's channel (`app.channels.registry`)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def sends_by(self) -> Channel:
        return channel_named(self.channel)


class BatchControl:
    """A stop request that another thread (the task's, on `ray.cancel`) can make."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None
        self.requested = False

    def bind(self) -> asyncio.Event:
        self.loop, self.event = asyncio.get_running_loop(), asyncio.Event()
        if self.requested:
            self.event.set()
        return self.event

    def request_stop(self) -> None:
        self.requested = True
        if self.loop is not None and self.event is not None:
            self.loop.call_soon_threadsafe(self.event.set)


def worker_identity(node_id: str | None = None) -> dict[str, Any]:
    node = (node_id or socket.gethostname())[:12]
    return {"node": node, "worker": f"{node[:8]}-{os.getpid()}", "worker_pid": os.getpid(),
            "host": socket.gethostname()}


_compiled: dict[tuple, CompiledTemplates] = {}


def compiled_templates(templates: dict[str, str | None]) -> CompiledTemplates:
    """Templates compile once per campaign per process (workers run many batches)."""
    key = (templates.get("subject") or "", templates.get("body_text") or "",
           templates.get("body_html"))
    found = _compiled.get(key)
    if found is None:
        if len(_compiled) >= 64:
            _compiled.clear()
        found = _compiled[key] = compile_templates(*key)
    return found


ROLLUP_EVERY_S = 5.0


class OutcomeRecorder:
    """Outcomes written behind the sends, in bulk, with a bound on what waits."""

    def __init__(self, db: AsyncDatabase, job: BatchJob, identity: dict[str, Any]):
        self.db, self.job = db, job
        self.identity = {"node": identity["node"], "worker": identity["worker"]}
        self.flush_every = job.settings.send_flush_every
        self.flush_s = job.settings.send_flush_s
        self.inserts: list[dict] = []
        self.updates: list[tuple[str, dict]] = []
        self.previous: dict[str, dict] = {}  # queued updates: the record they replace
        self.increments = rollups.Increments()  # written, not yet in the roll-ups
        self.rollups_at = time.monotonic()
        self.statuses: dict[str, tuple[str, str]] = {}  # queued: delivery id -> status, customer
        self.oldest: float | None = None
        self.counts: Counter[str] = Counter()
        self.retry_ids: list[str] = []
        self.latencies: list[float] = []
        self.unrecorded = 0
        self.webhooks = 0  # events stored for webhook endpoints (the runner pokes their actor)
        self.changed = asyncio.Condition()
        self.kick = asyncio.Event()
        self.error: BaseException | None = None
        self.closing = False
        self.flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def record(self, customer_id: str, previous: dict | None, outcome: SendOutcome,
                     latency_ms: float | None, message_id: str | None) -> str:
        did = delivery_id(self.job.campaign_id, customer_id)
        status, fields = self._fields(previous, outcome, latency_ms, message_id)
        async with self.changed:
            while self.unrecorded >= 2 * self.flush_every and self.error is None:
                await self.changed.wait()
            if self.error is not None:
                raise self.error
            if previous is None:
                self.inserts.append({"_id": did, "campaign_id": self.job.campaign_id,
                                     "customer_id": customer_id, "created_at": fields[
                                         "last_attempt_at"], **fields})
            else:
                self.updates.append((did, fields))
                self.previous[did] = previous
            self.statuses[did] = (status, customer_id)
            self.unrecorded += 1
            if self.oldest is None:  # the flush loop may sleep with no deadline: wake it
                self.oldest = time.monotonic()  # to count this one's send_flush_s
                self.kick.set()
            if len(self.statuses) >= self.flush_every:
                self.kick.set()
        return status

    def _fields(self, previous: dict | None, outcome: SendOutcome, latency_ms: float | None,
                message_id: str | None) -> tuple[str, dict]:
        at = batches.now()
        attempts = (previous or {}).get("attempts", 0) + 1
        fields: dict[str, Any] = {"last_code": outcome.code, "last_error": outcome.error,
                                  "last_attempt_at": at, "batch_id": self.job.batch_id,
                                  **self.identity}
        fields.update(self.job.sends_by.stored_fields())
        if outcome.status == SENT:
            status = DeliveryStatus.SENT
            fields.update(sent_at=at, latency_ms=latency_ms, message_id=message_id,
                          **self.job.sends_by.sent_fields(outcome))
        elif outcome.status == FAILED:
            status = DeliveryStatus.FAILED
        elif outcome.status == SKIPPED:
            status, attempts = DeliveryStatus.SKIPPED, attempts - 1
        elif attempts >= self.job.settings.send_max_attempts:
            status = DeliveryStatus.DEAD
        else:
            status = DeliveryStatus.PENDING  # another attempt after the backoff
        fields["status"] = status
        fields["attempts"] = attempts
        return status, fields

    async def _flush_loop(self) -> None:
        while True:
            queued = len(self.statuses)
            age = time.monotonic() - self.oldest if self.oldest is not None else 0.0
            if queued and (self.closing or queued >= self.flush_every or age >= self.flush_s):
                await self._flush()
                continue
            if not queued and self.closing:
                return  # the roll-up increments left go to the runner in the summary
            self.kick.clear()
            timeout = max(0.0, self.flush_s - age) if queued else None
            with contextlib.suppress(TimeoutError):  # the oldest outcome's time is up
                await asyncio.wait_for(self.kick.wait(), timeout)

    async def _flush(self) -> None:
        """Write the queued outcomes (with the roll-ups when due), then what follows from
        those written: their SMS parts and their webhook event. One bulk write per
        collection, not one `bulkWrite` across them: the embedded server runs that op by
        op, and 25 inserts cost it three times what one `insert` of 25 does
        (`benchmarks/bulk_write.py`)."""
        inserts, self.inserts = self.inserts, []
        updates, self.updates = self.updates, []
        previous, self.previous = self.previous, {}
        statuses, self.statuses = self.statuses, {}
        self.oldest = None
        try:
            writes = bulk.Writes(self.db, one_command=False)
            placed = ledger.stage_outcomes(writes, inserts, updates)
            # The reports' roll-ups gather over the batch and go back to the runner with
            # its counts (it writes them with the campaign's counters, for every task at
            # once); a long batch writes its own every ROLLUP_EVERY_S, but not at its
            # last flush, whose increments ride in the summary like a short batch's.
            # Every task of a campaign adds to the same document: a write per flush made
            # them queue on it.
            if not self.closing and time.monotonic() - self.rollups_at >= ROLLUP_EVERY_S:
                rollups.stage(writes, self.increments)
                self.increments, self.rollups_at = rollups.Increments(), time.monotonic()
            lost = {placed[at] for at in await writes.apply() if at in placed}
            written = [(doc["_id"], doc) for doc in inserts if doc["_id"] not in lost]
            for _, doc in written:
                self.increments.outcome(self.job.campaign_id, doc, None)
            for did, fields in updates:
                self.increments.outcome(self.job.campaign_id, fields, previous[did])
            parts = bulk.Writes(self.db, one_command=False)
            # Where a delivery receipt finds its delivery (actors.sms_gateway).
            ledger.stage_sms_parts(parts, [
                {"_id": part, "delivery_id": did, "campaign_id": self.job.campaign_id}
                for did, fields in (*written, *updates) for part in fields.get("smsc_ids", ())])
            await parts.apply()
            changed = [{"delivery_id": did, "customer_id": customer_id, "status": status}
                       for did, (status, customer_id) in statuses.items() if did not in lost]
            if changed:  # one event per flush, and no write at all when nobody listens
                await self._emit(changed)
        except BaseException as exc:  # surface it to the senders: stop sending
            async with self.changed:
                self.error = exc
                self.changed.notify_all()
            raise
        for did, (status, customer_id) in statuses.items():
            if did in lost:  # another run recorded it first; its count is its own
                continue
            if status == DeliveryStatus.PENDING:
                self.counts[AttemptOutcome.RETRY] += 1
                self.retry_ids.append(customer_id)
            else:
                self.counts[status] += 1
        async with self.changed:
            self.unrecorded -= len(statuses)
            self.changed.notify_all()

    async def _emit(self, changed: list[dict]) -> None:
        """The webhook event of a flush; the outcomes are recorded whatever becomes of it."""
        try:
            self.webhooks += await webhooks.emit(self.db, webhooks.DELIVERY_STATUS, {
                "campaign_id": self.job.campaign_id, "deliveries": changed},
                endpoints=self.job.listeners)
        except Exception:
            log.exception("batch %s: its delivery.status event could not be stored",
                          self.job.batch_id)

    async def close(self) -> None:
        """Wait until every outcome is written."""
        self.closing = True
        self.kick.set()
        await self.flusher


async def run_batch(job: BatchJob, *, node_id: str | None = None,
                    reserve: Reserve | None = None,
                    control: BatchControl | None = None,
                    on_draining: Draining | None = None,
                    close: bool = True,
                    clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Send one batch; return what happened (counts by status, identity, what is next).
    `on_draining` is called once, when the last recipient is taken for sending. The
    run's close (what is left of the batch, at which attempt) is in `summary["close"]`;
    `close` False leaves writing it to the caller (the runner, with the counters)."""
    db = job.runtime.database()
    return await BatchRun(db, job, worker_identity(node_id), reserve,
                          control or BatchControl(), on_draining, close, clock).run()


class BatchRun:
    """One run of one claimed batch on this worker."""

    def __init__(self, db: AsyncDatabase, job: BatchJob, identity: dict[str, Any],
                 reserve: Reserve | None, control: BatchControl,
                 on_draining: Draining | None = None, close_here: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.db, self.job, self.identity = db, job, identity
        self.close_here = close_here
        self.reserve, self.control = reserve, control
        self.on_draining = on_draining
        self.settings = job.settings
        self.stop_reason: list[str] = []
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.records: dict[str, dict] = {}
        self.customers: dict[str, dict] = {}
        # A message goes out only while this task knows its lease holds: until lease_s
        # after its last renewal was *issued*, by its own monotonic clock. The database
        # set that lease's end from its own clock when the renewal arrived, later, so
        # no clock of another node (nor this one's wall clock) enters. A job handed
        # over with `lease_left_s` counts from its start, less a margin for Ray's
        # dispatch. Past it, the batch may be requeued and sent by another run (a
        # task cut off from the database keeps no lease): this one stops.
        self.clock = clock
        self.lease_s = self.settings.send_lease_s
        self.margin_s = min(2.0, self.lease_s / 4)
        self.lease_until = 0.0
        self.renewed_at = 0.0  # when the last renewal (or the claim) was issued

    async def run(self) -> dict[str, Any]:
        job = self.job
        summary: dict[str, Any] = {"batch": job.batch_id, "channel": job.channel,
                                   **self.identity, "claimed": 0,
                                   "counts": {}, "retries": 0, "latencies": [],
                                   "due_in_s": None, "stopped": None}
        self.stop = self.control.bind()
        if not await self._hold_lease():
            summary["stopped"] = "lost"
            return summary
        if not job.fresh:
            self.records = await ledger.recorded(self.db, [
                delivery_id(job.campaign_id, c) for c in job.customer_ids])
        to_send, carried = self._plan()
        summary["claimed"] = len(to_send)
        if to_send:
            self.customers = await self._recipients(to_send)
        for cid in to_send:
            self.queue.put_nowait(cid)
        recorder = OutcomeRecorder(self.db, job, self.identity)
        watcher = asyncio.create_task(self._watch())
        n = min(max(1, job.connections), max(1, len(to_send)))
        senders = await job.sends_by.open_senders(self.settings, job.runtime.endpoints, n)
        try:
            await asyncio.gather(*(self._connection(s, recorder) for s in senders))
        finally:
            self.stop.set()
            watcher.cancel()
            await recorder.close()
            job.sends_by.close_senders(senders)
        unsent = [self.queue.get_nowait() for _ in range(self.queue.qsize())]
        retry = carried + recorder.retry_ids
        if unsent or self.stop_reason:
            # Stopped (pause, cancel, lease, bad login): what is left keeps its attempt.
            remaining, attempt, backoff_s = unsent + retry, job.attempt, 0.0
        else:
            attempt = job.attempt + 1
            remaining = retry
            backoff_s = batches.backoff_s(attempt, self.settings.retry_backoff_s) \
                if retry else 0.0
        summary["close"] = {"batch": job.batch_id, "claim": job.claim,
                            "remaining": remaining, "attempt": attempt, "backoff_s": backoff_s}
        if self.close_here:
            await close_batch(self.db, summary)
        if remaining:  # (if the claim was lost meanwhile, the runner's claim finds out)
            summary["due_in_s"] = backoff_s
        counts = dict(recorder.counts)
        summary.update(counts=counts, retries=counts.pop(AttemptOutcome.RETRY, 0),
                       latencies=recorder.latencies, released=len(unsent),
                       rollups=recorder.increments.take() if recorder.increments else None,
                       webhooks=recorder.webhooks,
                       stopped=self.stop_reason[0] if self.stop_reason else None)
        return summary

    async def _recipients(self, ids: list[str]) -> dict[str, dict]:
        """The customers to send to, fresh as of now: their documents from the page the
        runner read, less whoever unsubscribed since (clock skew between nodes covered
        by a margin), or read here when the job carries none."""
        job = self.job
        if job.customers is None or job.customers_read_at is None:
            return {c["_id"]: c async for c in self.db.customers.find(
                {"_id": {"$in": ids}}, SEND_FIELDS)}
        gone = await unsubscribed_since(self.db, job.customers_read_at - CLOCK_MARGIN)
        wanted = set(ids)
        return {c["_id"]: ({**c, "unsubscribed": True} if c["_id"] in gone else c)
                for c in job.customers if c["_id"] in wanted}

    async def _hold_lease(self) -> bool:
        """The claim's lease: a task that starts soon after the runner's claim sends
        under it as is; one that starts late (queued behind others, or a rerun) renews
        it first, which also proves the claim is still its own. False: it is gone."""
        if self.job.lease_left_s is not None:
            started = self.clock()
            self.renewed_at = started + self.job.lease_left_s - self.lease_s
            self.lease_until = started + self.job.lease_left_s - self.margin_s
        if self.lease_until - self.clock() > self.lease_s / 2:
            return True
        return await self._renew()

    async def _renew(self) -> bool:
        issued = self.clock()
        if not await batches.renew_lease(self.db, self.job.batch_id, self.job.claim,
                                           self.lease_s, self.identity):
            return False
        self.renewed_at = issued
        self.lease_until = issued + self.lease_s - self.margin_s
        return True

    def _plan(self) -> tuple[list[str], list[str]]:
        """Which recipients this run sends, and which already wait for the next attempt."""
        to_send, carried = [], []
        for cid in self.job.customer_ids:
            record = self.records.get(delivery_id(self.job.campaign_id, cid))
            if record is None or (record["status"] == DeliveryStatus.PENDING
                                  and record["attempts"] <= self.job.attempt):
                to_send.append(cid)
            elif record["status"] == DeliveryStatus.PENDING:
                carried.append(cid)
        return to_send, carried

    async def _watch(self) -> None:
        """Renew the lease while the batch runs long; stop when the claim is gone."""
        while not self.stop.is_set():
            await asyncio.sleep(max(0.0, self.renewed_at + self.lease_s / 3 - self.clock()))
            try:
                renewed = await self._renew()
            except Exception:  # cut off from the database: the lease runs out on its own
                log.warning("batch %s: lease not renewed", self.job.batch_id, exc_info=True)
                await asyncio.sleep(RENEW_RETRY_S)
                continue
            if not renewed:
                self._halt("lease lost")
                return

    def _draining(self) -> None:
        """The last recipient is taken: the runner may start the next batch now, while
        this one's last messages are on the wire and its outcomes are written (the
        batch boundary cost a connection a dispatch and a task start, ~50 ms)."""
        notify, self.on_draining = self.on_draining, None
        if notify is None:
            return
        try:
            notify()
        except Exception:  # an optimisation only: the batch goes on without it
            log.warning("batch %s: the runner could not be told it drains",
                        self.job.batch_id, exc_info=True)

    def _halt(self, reason: str) -> None:
        if not self.stop_reason:
            self.stop_reason.append(reason)
        self.stop.set()

    async def _connection(self, sender, recorder: OutcomeRecorder) -> None:
        while not self.stop.is_set():
            try:
                cid = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if self.queue.empty() and self.on_draining is not None:
                self._draining()
            previous = self.records.get(delivery_id(self.job.campaign_id, cid))
            outcome, latency_ms, mid = await self._send_one(cid, sender)
            if outcome is None or outcome.status == AUTH:
                self.queue.put_nowait(cid)  # not sent: stays in the batch
                if outcome is not None:
                    self._halt(AttemptOutcome.AUTH)
                    await campaigns.fail_campaign(
                        self.db, self.job.campaign_id,
                        f"{self.job.sends_by.relay} failed: {outcome.error}")
                return
            await recorder.record(cid, previous, outcome, latency_ms, mid)
            if latency_ms is not None:
                recorder.latencies.append(latency_ms)

    async def _send_one(self, cid: str, sender
                        ) -> tuple[SendOutcome | None, float | None, str | None]:
        job = self.job
        customer = self.customers.get(cid)
        if customer is None or customer.get("unsubscribed") is True:  # (a pending signup
            # is sent its confirmation, the one campaign it belongs to)
            return SendOutcome(SKIPPED, None, "unsubscribed or removed"), None, None
        unreachable = job.sends_by.unreachable(customer)  # no address, or opted out (STOP)
        if unreachable is not None:
            return SendOutcome(SKIPPED, None, unreachable), None, None
        did = delivery_id(job.campaign_id, cid)
        try:
            composed = job.sends_by.compose(
                compiled_templates(job.templates), customer, runtime=job.runtime,
                delivery_id=did, tracking=job.tracking)
        except TemplateProblem as exc:
            return SendOutcome(FAILED, None, str(exc)[:300]), None, None
        if job.limits and self.reserve is not None:
            wait = await self.reserve(job.limits, composed.units)
            if wait > 0:
                try:
                    await asyncio.wait_for(self.stop.wait(), timeout=wait)
                    return None, None, None  # stopped while waiting for a token
                except TimeoutError:
                    pass
        if self.stop.is_set():
            return None, None, None
        if self.clock() >= self.lease_until:  # renewals fell behind, or cannot get through
            self._halt("lease lapsed")
            return None, None, None
        started = time.perf_counter()
        outcome = await sender.send(composed.message)
        return outcome, (time.perf_counter() - started) * 1000, composed.message_id


async def close_batch(db: AsyncDatabase, summary: dict[str, Any]) -> bool:
    """Write a run's close (`summary["close"]`); False when its claim was lost."""
    close = summary["close"]
    return await batches.close_batch(db, close["batch"], close["claim"],
                                       remaining=close["remaining"], attempt=close["attempt"],
                                       backoff_s=close["backoff_s"])


def stage_finished(writes: bulk.Writes, campaign_id: str, campaign_update: dict,
                   increments: rollups.Increments | None, closes: list[dict]) -> None:
    """Queue what finished runs leave to write, together: the campaign's update (its
    counters), the roll-up increments and each run's close (`summary["close"]`). The
    runner writes a round's this way, a cancelled task its own."""
    if campaign_update:
        writes.update("campaigns", {"_id": campaign_id}, campaign_update)
    if increments:
        rollups.stage(writes, increments)
    for close in closes:
        writes.update("batches", {"_id": close["batch"], "claim": close["claim"]},
                      batches.close_update(close["remaining"], close["attempt"],
                                             close["backoff_s"]))


async def count_alone(job: BatchJob, summary: dict[str, Any], *, close: bool) -> None:
    """Add a stopped batch's outcomes to the campaign's counters and roll-ups, and
    close it if `close`: its summary does not reach the runner (Ray reports a cancelled
    task as cancelled). One command."""
    writes = bulk.Writes(job.runtime.database())
    stage_finished(writes, job.campaign_id,
                   ledger.progress_update(ledger.summary_increments(summary), None),
                   summary.get("rollups"),
                   [summary["close"]] if close and summary.get("close") else [])
    await writes.apply()
