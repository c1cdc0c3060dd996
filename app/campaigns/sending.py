"""Sending one batch of a campaign: hold the claim's lease, read the recipients, have the
campaign's channel compose and send each message (`app.channels`), record the outcomes
in bulk (`app.campaigns.outcomes`), say how the batch closes. Pure
asyncio; the Ray task in `app.campaigns.send_tasks` runs it on its worker process's loop.

Database work per batch, not per message: a fresh batch of 100 costs one read (who of
its customers unsubscribed since the runner read them) and an `insert` per flush of
outcomes. A webhook endpoint that listens for delivery events (the runner says which,
in the job) adds one insert per flush, an SMS batch its parts. The close (what is left
of the batch, at which attempt) goes back to the runner in the `BatchSummary`, with
the counts and roll-up increments, and the runner writes it with the counters and the
roll-ups of every task that finished in its round, in one command
(`app.campaigns.rounds`); it also made the batch's insert. A fresh batch sends under
the lease that insert began, so it needs no command to start; a task that starts late
renews first. A run that dies before its close is written leaves its batch claimed
until the lease runs out; the rerun then finds every outcome recorded and sends
nothing again.
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
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.audience.customers import SEND_FIELDS
from app.audience.suppressions import consent_changed_since
from app.campaigns import batches, caps, fallback, ledger, quiet_hours
from app.campaigns import records as campaigns
from app.campaigns.batch import BatchClose, BatchControl, BatchJob, BatchSummary, worker_identity
from app.campaigns.outcomes import OutcomeRecorder
from app.channels.base import Channel, Route, SendOutcome
from app.channels.registry import channel_named
from app.channels.routing import Report, RoutedSender, close_routed, routed_senders
from app.channels.templates import CompiledTemplates, TemplateProblem, compile_templates
from app.core.ids import delivery_id
from app.core.statuses import AttemptOutcome, DeliveryStatus

log = logging.getLogger("operator_comms.sending")
SENT, FAILED, AUTH = AttemptOutcome.SENT, AttemptOutcome.FAILED, AttemptOutcome.AUTH
# (limits, units, answers heard per route since the last call) -> seconds to wait
Reserve = Callable[[dict[str, float], float, dict[str, tuple[int, int]] | None],
                   Awaitable[float]]
Draining = Callable[[], None]
SKIPPED = DeliveryStatus.SKIPPED  # the outcome of a recipient who is gone
CLOCK_MARGIN = timedelta(seconds=60)
RENEW_RETRY_S = 0.5
MAX_DEFERRALS = 10  # "slow down" answers one recipient may get in a run before it is
# recorded as a transient failure (its attempt counted) like any other


_compiled: dict[tuple, CompiledTemplates] = {}


def preferred_channel(customer: dict) -> str | None:
    """The channel a customer said they prefer (an imported `preferred_channel`)."""
    said = (customer.get("vars") or {}).get("preferred_channel")
    return said.strip().lower() if isinstance(said, str) else None


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


async def run_batch(job: BatchJob, *, node_id: str | None = None,
                    reserve: Reserve | None = None,
                    control: BatchControl | None = None,
                    on_draining: Draining | None = None,
                    clock: Callable[[], float] = time.monotonic,
                    wall_clock: Callable[[], datetime] = batches.now,
                    report: Report | None = None) -> BatchSummary:
    """Send one batch; return what happened (counts by status, identity, what is next).
    `on_draining` is called once, when the last recipient is taken for sending;
    `report` when one of the channel's routes goes out of service or back. The
    run's close (what is left of the batch, at which attempt) is in `summary.close`,
    for the runner to write with the round's counters (`app.campaigns.rounds`)."""
    db = job.runtime.database()
    return await BatchRun(db, job, worker_identity(node_id), reserve,
                          control or BatchControl(), on_draining, clock, wall_clock,
                          report).run()


class BatchRun:
    """One run of one claimed batch on this worker."""

    def __init__(self, db: AsyncDatabase, job: BatchJob, identity: dict[str, Any],
                 reserve: Reserve | None, control: BatchControl,
                 on_draining: Draining | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], datetime] = batches.now,
                 report: Report | None = None):
        self.db, self.job, self.identity = db, job, identity
        self.wall_clock = wall_clock  # local times of send windows (tests inject it)
        # The channel's routes (relays, SMSCs; `app.channels.routing`): each connection
        # is on one, chosen by weight among those in service. A route with a ceiling
        # has a shared rate that adapts to its answers: "slow down" answers defer the
        # message (requeued here, no attempt counted) and are told to the limiter; a
        # route that fails hands its message to another (requeued too).
        # A recipient the campaign's channel cannot reach goes by the first of its
        # fallback channels that can (`chosen`); each connection has a sender per
        # channel it uses.
        self.channels = [job.sends_by, *(channel_named(name) for name, _ in job.fallback)]
        self.windows = {job.channel: job.windows, **dict(job.fallback)}
        self.chosen: dict[str, Channel] = {}
        # Each recipient's channels of the rule still to go by, in order (the first is
        # theirs now): a channel that refuses them at once hands them to the next one;
        # one that is not their last waits for its confirmation (`fallback_waits`).
        self.ahead: dict[str, list[Channel]] = {}
        self.tried: dict[str, list[dict]] = {}  # this run's refusals, per recipient
        self.exhausted: set[str] = set()  # moved on from every channel that reaches them
        self.routes = [route for channel in self.channels
                       for route in channel.routes(job.settings, job.runtime.endpoints)]
        self.route_keys = {route.key for route in self.routes}
        self.report = report
        self.heard: dict[str, list[int]] = {}  # clean, throttled answers per route
        self.deferrals: dict[str, int] = {}  # requeues per recipient, either way
        self.deferred = self.rerouted = 0
        self.waiting: list[str] = []  # outside their send window
        self.wait_s = 0.0  # until the first of them may be sent
        self.reserve, self.control = reserve, control
        self.on_draining = on_draining
        self.settings = job.settings
        self.stop_reason: list[str] = []
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.records: dict[str, dict] = {}
        self.customers: dict[str, dict] = {}
        self.recent: dict[str, list] = {}  # last sends of its customers, under a cap
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

    async def run(self) -> BatchSummary:
        job = self.job
        summary = BatchSummary.started(job, self.identity)
        self.stop = self.control.bind()
        if not await self._hold_lease():
            summary.stopped = "lost"
            return summary
        if not job.fresh:
            self.records = await ledger.recorded(self.db, [
                delivery_id(job.campaign_id, c) for c in job.customer_ids])
        to_send, carried = self._plan()
        summary.claimed = len(to_send)
        if to_send:
            self.customers = await self._recipients(to_send)
            if job.fallback:
                self.chosen = self._choose(to_send)
            if any(self.windows.values()):  # outside their window: left for when it opens
                to_send = self._hold_outside_windows(to_send)
            if job.cap is not None:  # who another campaign messaged meanwhile counts too
                self.recent = await caps.recent_sends(self.db, to_send)
        for cid in to_send:
            self.queue.put_nowait(cid)
        recorder = OutcomeRecorder(self.db, job, self.identity)
        watcher = asyncio.create_task(self._watch())
        n = min(max(1, job.connections), max(1, len(to_send)))
        connections: list[dict[str, RoutedSender]] = [{} for _ in range(n)]
        try:
            await asyncio.gather(*(self._connection(c, recorder) for c in connections))
        finally:
            self.stop.set()
            watcher.cancel()
            await recorder.close()
            for channel in self.channels:
                close_routed(channel, [c[channel.name] for c in connections
                                       if channel.name in c])
        unsent = [self.queue.get_nowait() for _ in range(self.queue.qsize())]
        retry = carried + recorder.retry_ids
        if unsent or self.stop_reason:
            # Stopped (pause, cancel, lease, bad login): what is left keeps its attempt.
            remaining, attempt, backoff_s = unsent + retry + self.waiting, job.attempt, 0.0
        else:
            # Retries come back after their backoff, at the next attempt; recipients
            # outside their window when it opens (waiting is not an attempt).
            attempt = job.attempt + 1 if retry else job.attempt
            remaining = retry + self.waiting
            due = ([batches.backoff_s(attempt, self.settings.retry_backoff_s)] if retry
                   else []) + ([self.wait_s] if self.waiting else [])
            backoff_s = min(due) if due else 0.0
        summary.close = BatchClose(job.batch_id, job.claim, remaining, attempt, backoff_s)
        if remaining:  # (if the claim was lost meanwhile, the runner's claim finds out)
            summary.due_in_s = backoff_s
        counts = dict(recorder.counts)
        summary.retries = counts.pop(AttemptOutcome.RETRY, 0)
        summary.counts = counts
        summary.latencies = recorder.latencies
        summary.released = len(unsent)
        summary.waiting = len(self.waiting)
        summary.deferred = self.deferred
        summary.rerouted = self.rerouted
        summary.rollups = recorder.increments.take() if recorder.increments else None
        summary.webhooks = recorder.webhooks
        summary.stopped = self.stop_reason[0] if self.stop_reason else None
        return summary

    def _choose(self, ids: list[str]) -> dict[str, Channel]:
        """Each recipient's channel: the campaign's, or the first fallback that can
        reach them when it cannot (absent: none can; the campaign's says why); with
        `customers_choice`, the customer's own preferred channel first. Channels the
        recipient's delivery already went by (`tried`, moved on after its send) are
        not taken again."""
        chosen = {}
        for cid in ids:
            customer = self.customers.get(cid)
            if customer is None:
                continue
            order = self.channels
            if self.job.customers_choice:
                preferred = preferred_channel(customer)
                order = sorted(order, key=lambda c: c.name != preferred)  # (stable)
            record = self.records.get(delivery_id(self.job.campaign_id, cid)) or {}
            gone = {entry.get("channel") for entry in record.get("tried") or ()}
            order = [c for c in order if c.name not in gone]
            ahead = [c for c in order if c.unreachable(customer) is None]
            self.ahead[cid] = ahead
            if ahead:
                chosen[cid] = ahead[0]
            elif gone:  # every channel left is tried or cannot reach them
                self.exhausted.add(cid)
        return chosen

    def _channel_of(self, cid: str) -> Channel:
        return self.chosen.get(cid, self.job.sends_by)

    def _next_channel(self, cid: str, channel: Channel, outcome: SendOutcome) -> bool:
        """The channel refused this recipient for good: the next one of their rule
        takes them, in this run (True), if there is one."""
        ahead = self.ahead.get(cid)
        if not ahead or len(ahead) < 2 or ahead[0] is not channel:
            return False
        ahead.pop(0)
        self.chosen[cid] = ahead[0]
        self.tried.setdefault(cid, []).append({
            "channel": channel.name, "last_code": outcome.code,
            "last_error": outcome.error, "why": "failed", "left_at": batches.now()})
        self.queue.put_nowait(cid)
        return True

    def _extra(self, cid: str, previous: dict | None, channel: Channel
               ) -> tuple[dict | None, str | None]:
        """What the record adds for a rule (the channels tried), and what must confirm
        the message before a further channel of the rule takes it (None: nothing)."""
        if not self.job.fallback:
            return None, None
        tried = self.tried.get(cid)
        extra = {"tried": [*((previous or {}).get("tried") or ()), *tried]} if tried else None
        if self.job.confirm is None or len(self.ahead.get(cid) or ()) < 2:
            return extra, None
        return extra, fallback.wait_level(self.job.confirm, channel.confirms,
                                          bool((self.job.tracking or {}).get("opens")))

    def _hold_outside_windows(self, to_send: list[str]) -> list[str]:
        """Leave out who is outside the send window of the channel they go by (they
        wait for it); the rest, to send now."""
        by_channel: dict[str, list[str]] = {}
        for cid in to_send:
            by_channel.setdefault(self._channel_of(cid).name, []).append(cid)
        first: float | None = None
        for name, ids in by_channel.items():
            windows = self.windows.get(name, ())
            if not windows:
                continue
            waiting, wait = quiet_hours.outside(windows, self.customers, ids,
                                                self.settings.default_timezone,
                                                self.wall_clock())
            self.waiting += waiting
            if waiting and wait is not None:
                seconds = wait.total_seconds()
                first = seconds if first is None else min(first, seconds)
        if self.waiting:
            self.wait_s = first or 0.0
            held = set(self.waiting)
            return [cid for cid in to_send if cid not in held]
        return to_send

    def _sender(self, connection: dict[str, RoutedSender], channel: Channel) -> RoutedSender:
        """The connection's sender for the channel (made on its first message)."""
        sender = connection.get(channel.name)
        if sender is None:
            sender = connection[channel.name] = routed_senders(
                channel, self.settings, self.job.runtime.endpoints, 1, self.report)[0]
        return sender

    async def _recipients(self, ids: list[str]) -> dict[str, dict]:
        """The customers to send to, fresh as of now: their documents from the page the
        runner read, with the consent of those whose consent changed since (an
        unsubscribe, a suppression; clock skew between nodes covered by a margin), or
        read here when the job carries none."""
        job = self.job
        if job.customers is None or job.customers_read_at is None:
            return {c["_id"]: c async for c in self.db.customers.find(
                {"_id": {"$in": ids}}, SEND_FIELDS)}
        changed = await consent_changed_since(self.db, job.customers_read_at - CLOCK_MARGIN)
        wanted = set(ids)
        return {c["_id"]: ({**c, **changed[c["_id"]]} if c["_id"] in changed else c)
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
        this one's last messages are on the wire and its outcomes are written (else
        the boundary leaves its connections idle through a dispatch and a task start)."""
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

    async def _connection(self, connection: dict[str, RoutedSender],
                          recorder: OutcomeRecorder) -> None:
        while not self.stop.is_set():
            try:
                cid = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if self.queue.empty() and self.on_draining is not None:
                self._draining()
            previous = self.records.get(delivery_id(self.job.campaign_id, cid))
            channel = self._channel_of(cid)
            sender = self._sender(connection, channel)
            outcome, latency_ms, mid = await self._send_one(cid, sender, channel)
            if outcome is not None and (self._deferred(cid, outcome, sender)
                                        or self._moved(cid, sender)):
                continue
            if (outcome is not None and outcome.status == FAILED and self.job.fallback
                    and self._next_channel(cid, channel, outcome)):
                continue
            if outcome is None or outcome.status == AUTH:
                self.queue.put_nowait(cid)  # not sent: stays in the batch
                if outcome is not None:
                    self._halt(AttemptOutcome.AUTH)
                    await campaigns.fail_campaign(
                        self.db, self.job.campaign_id,
                        f"{channel.relay} failed: {outcome.error}")
                return
            customer = self.customers.get(cid)
            extra, waits = self._extra(cid, previous, channel)
            await recorder.record(cid, previous, outcome, latency_ms, mid,
                                  channel.address_of(customer) if customer else None,
                                  channel, extra, waits)
            if latency_ms is not None:
                recorder.latencies.append(latency_ms)

    def _deferred(self, cid: str, outcome: SendOutcome, sender: RoutedSender) -> bool:
        """Tell the route's rate what this answer was; a "slow down" answer puts the
        recipient back in the queue (True), up to MAX_DEFERRALS times."""
        route = sender.used
        if route is None or route.key not in self.job.limits or outcome.code is None:
            return False  # not adapting, or no answer at all (a connection problem)
        heard = self.heard.setdefault(route.key, [0, 0])
        if not self._channel_of(cid).throttled(outcome):
            heard[0] += 1
            return False
        heard[1] += 1
        if not self._requeue(cid):
            return False
        self.deferred += 1
        return True

    def _moved(self, cid: str, sender: RoutedSender) -> bool:
        """The message's route failed and the connection moved to another: the
        recipient goes back in the queue for it (True), up to MAX_DEFERRALS times."""
        if not sender.moved:
            return False
        self.rerouted += 1
        return self._requeue(cid)

    def _requeue(self, cid: str) -> bool:
        """Back in the queue unless this recipient was put back MAX_DEFERRALS times."""
        times = self.deferrals[cid] = self.deferrals.get(cid, 0) + 1
        if times > MAX_DEFERRALS:
            return False
        self.queue.put_nowait(cid)
        return True

    def _limits_for(self, route: Route | None) -> dict[str, float]:
        """The job's limits less those of the routes this send does not take."""
        limits = self.job.limits
        if len(self.routes) == 1:
            return limits  # (the one route's, or none)
        return {key: rate for key, rate in limits.items()
                if key not in self.route_keys or (route is not None and key == route.key)}

    def _take_heard(self) -> dict[str, tuple[int, int]] | None:
        if not self.heard:
            return None
        heard = {key: (clean, throttled) for key, (clean, throttled) in self.heard.items()}
        self.heard = {}
        return heard

    async def _send_one(self, cid: str, sender: RoutedSender, channel: Channel
                        ) -> tuple[SendOutcome | None, float | None, str | None]:
        job = self.job
        customer = self.customers.get(cid)
        if customer is None or customer.get("unsubscribed") is True:  # (a pending signup
            # is sent its confirmation, the one campaign it belongs to)
            return SendOutcome(SKIPPED, None, "unsubscribed or removed"), None, None
        if cid in self.exhausted:
            return SendOutcome(SKIPPED, None, "no channel of the rule reaches them"), \
                None, None
        unreachable = channel.unreachable(customer)  # no address, or opted out (STOP)
        if unreachable is not None:
            return SendOutcome(SKIPPED, None, unreachable), None, None
        if job.cap is not None and job.cap.reached(self.recent.get(cid, ()), batches.now()):
            return SendOutcome(SKIPPED, None, job.cap.reason), None, None
        did = delivery_id(job.campaign_id, cid)
        try:
            composed = channel.compose(
                compiled_templates(job.templates), customer, runtime=job.runtime,
                delivery_id=did, tracking=job.tracking,
                options=job.channel_options.get(channel.name))
        except TemplateProblem as exc:
            return SendOutcome(FAILED, None, str(exc)[:300]), None, None
        limits = self._limits_for(sender.route())
        if limits and self.reserve is not None:
            wait = await self.reserve(limits, composed.units, self._take_heard())
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
