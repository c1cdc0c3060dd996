"""The campaign runner: one detached actor per running campaign, driving its fan-out.

It pages through the audience (one indexed query per page of customers; its memory
holds one page, not the audience), cuts it into batches, inserts each batch already
claimed and hands it to a send task, keeping `workers` tasks sending. A task tells
the runner when its batch drains (every recipient taken, the last messages on the
wire); the runner starts the next batch then, beside it, so the boundary (collect,
claim, dispatch, task start) does not leave connections idle. The first
`workers` batches grow from batch_size / workers to batch_size (`first_wave_size`), so
the tasks' boundaries stay spread in time rather than all coming at once, every batch. Finished
tasks return their counts, roll-up increments and their batch's close through Ray, and
the runner writes them all (counters, roll-ups, closes) in one command (`app.core.bulk`), at
most every PROGRESS_EVERY_S (and whenever it stops). A task whose worker died fails
back here (Ray retries no send task: every run has a claim of its own); its batch is
not given back early, since a worker cut off may still be sending, but requeued by the
sweep once its lease lapsed by the database's clock, and claimed again; that run sends
only what has no outcome recorded. Batches that
need another attempt (4xx, connection trouble) come back in the task's summary with
how long until they are due; the runner keeps them in a heap and claims them again then.
Nothing polls the database for work: the heap, the tasks' results (awaited as
futures), their drain notices and `poke` (status changes, new confirmations) say when
to act. A sweep every few seconds gives back batches whose lease ran out (their task
is gone, e.g. the dispatcher that owned it died).

All progress lives in MongoDB, so a restarted runner (`max_restarts=-1`) resumes from
the newest batch's audience position, the open batches, and the tasks the dispatcher
still has in flight. Pause and cancel cancel the in-flight tasks through the
dispatcher; each stops cleanly and gives back what it did not send.

Teardown: a runner kills itself when its campaign ends; `ray.kill` of
`campaign-<id>` in namespace `operator-comms` stops one by hand.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections import Counter, deque
from datetime import UTC, datetime

import ray
from ray.exceptions import RayError, TaskCancelledError

from actors import registry
from actors.metrics import FunnelMetrics
from actors.rate_limiter import rate_limiter
from actors.send_dispatcher import send_dispatcher
from actors.webhook_sender import hand_on
from actors.webhook_sender import poke as webhook_poke
from app.audience.customers import audience_page
from app.campaigns import batches, fallback, ledger
from app.campaigns import records as campaigns
from app.campaigns.batch import BatchClose, BatchJob, BatchSummary
from app.campaigns.caps import cap_for
from app.campaigns.quiet_hours import windows_for
from app.campaigns.rounds import record_round
from app.campaigns.send_tasks import SendMetrics
from app.channels import statuses as channel_statuses
from app.channels.registry import channel_named
from app.channels.routing import route_limits
from app.core import rollups
from app.core.runtime import Runtime
from app.core.statuses import FINISHED, BatchStatus, CampaignStatus
from app.integrations import outbox, webhooks
from app.observability import logs, telemetry, tracing

log = logging.getLogger("operator_comms.runner")
SAMPLE_EVERY_S = 1.0
# The counters are a view for the dashboard (live each second) and are recounted from
# the deliveries at completion: one write per finished task was a tenth of the
# database's commands at batch size 100.
PROGRESS_EVERY_S = 0.5
SWEEP_EVERY_S = 5.0  # at least; a third of the lease when that is longer
LISTENERS_FRESH_S = 60.0  # webhook endpoints read again (the API also tells of changes)


def _not_yet(options: dict) -> bool:
    """A scheduled campaign before its start time."""
    start_at = options.get("start_at")
    return start_at is not None and start_at.replace(tzinfo=start_at.tzinfo or UTC) > \
        datetime.now(UTC)


class AudienceCursor:
    """Where the runner is in the audience: page by page, customer ids in order."""

    def __init__(self, audience: dict, pages: int, position: list | None, seen_page: int,
                 seen: int):
        self.audience, self.pages = audience, max(1, pages)
        self.page, self.after = (position or [0, None])
        self.buffer: deque[dict] = deque()  # customers of the page not batched yet
        self.loaded = -1  # the page in the buffer
        self.read_at = batches.now()  # when it was read
        # The audience's size so far: every page read, counted once (even across a
        # runner restart: the record says which page was counted last).
        self.seen_page, self.seen = seen_page, seen

    @property
    def exhausted(self) -> bool:
        return self.page >= self.pages and not self.buffer

    def remaining_if_known(self) -> int | None:
        """Recipients left, once the last page is in the buffer (None before)."""
        if self.loaded == self.pages - 1 and self.page == self.pages - 1:
            return len(self.buffer)
        return None

    def tail_size(self, batch_size: int, workers: int) -> int:
        """Guided self-scheduling on the last page: batches of remaining / workers, so
        every worker finishes at about the same time instead of a last wave of a few
        full batches (floor: a tenth of a batch, at least 10 recipients)."""
        remaining = self.remaining_if_known()
        if remaining is None:
            return batch_size
        return max(min(batch_size, max(10, batch_size // 10)),
                   min(batch_size, -(-remaining // max(1, workers))))

    async def take(self, db, n: int) -> tuple[list[dict], list]:
        """Up to n customers, and the position after the last one: pages before
        `page` are used up, and in `page` every id up to `after`."""
        taken: list[dict] = []
        while len(taken) < n and self.page < self.pages:
            if self.loaded != self.page:
                self.read_at = batches.now()
                page = await audience_page(db, self.audience, self.page, self.pages)
                if self.page > self.seen_page:
                    self.seen_page, self.seen = self.page, self.seen + len(page)
                self.buffer = deque(c for c in page
                                    if self.after is None or c["_id"] > self.after)
                self.loaded = self.page
            while self.buffer and len(taken) < n:
                taken.append(self.buffer.popleft())
                self.after = taken[-1]["_id"]
            if not self.buffer:
                self.page, self.after = self.page + 1, None
        return taken, [self.page, self.after]


def first_wave_size(seq: int, batch_size: int, workers: int) -> int:
    """The campaign's first `workers` batches grow from batch_size / workers to
    batch_size, so the tasks' batch boundaries (a claim, a dispatch, a task start each)
    fall apart in time instead of all together, batch after batch."""
    if seq >= workers:
        return batch_size
    return max(1, -(-batch_size * (seq + 1) // workers))


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class CampaignRunner(registry.MadeWithRuntime):
    def __init__(self, campaign_id: str, runtime: Runtime,
                 trace: dict[str, str] | None = None):
        self.campaign_id = campaign_id
        self.runtime = runtime
        self.settings = settings = runtime.settings
        telemetry.setup(settings, "campaign_runner")
        self.trace = trace  # the launch's: the runner's span, and the batches', go under it
        self.in_flight: dict[ray.ObjectRef, tuple[str, str]] = {}  # ref -> (batch, claim)
        self.finished: dict[ray.ObjectRef, asyncio.Future] = {}  # ref -> its result, awaited
        # In flight, and every recipient taken (the task said so): the last messages are
        # on the wire, so the next batch may start beside it (`workers` not counting it).
        self.draining: set[ray.ObjectRef] = set()
        self.me = ray.get_runtime_context().current_actor
        self.due: list[tuple[float, str]] = []  # (time, batch): pending batches, a heap
        self.wake = asyncio.Event()
        self.poked = False
        self.dispatcher = send_dispatcher(settings.actor_resources)
        self.limiter = rate_limiter(settings.actor_resources)
        self.state = "starting"
        self.status_now = CampaignStatus.RUNNING
        self.stopping = False  # in-flight tasks were asked to stop (pause, cancel)
        self.pending_inc: Counter[str] = Counter()
        self.uncounted = 0  # finished tasks whose counts are in pending_inc, not written
        self.pending_closes: list[BatchClose] = []  # their batches' closes, written with them
        self.pending_rollups = rollups.Increments()
        self.progress_at = 0.0  # when the counters were last written
        self.totals: Counter[str] = Counter()
        self.sampled = True
        # Messages a further channel of the rule waits on (`app.campaigns.fallback`),
        # as of the last sweep: the campaign completes once there are none.
        self.awaiting = 0
        self.moved_on_at = 0.0
        # Who listens for delivery.status, handed to every batch: read when the runner
        # starts, again when the API says the endpoints changed (`webhooks_changed`), and
        # at least every LISTENERS_FRESH_S; not by each send process every few seconds.
        self.listeners = webhooks.Subscriptions(ttl_s=LISTENERS_FRESH_S)
        self.loop_task = asyncio.get_running_loop().create_task(self._run())

    async def poke(self) -> None:
        """Status changed in the record, or new batches were queued: look again now."""
        self.poked = True
        self.wake.set()

    async def draining(self, batch: str, claim: str) -> None:
        """A task's batch drains (all its recipients taken): start the next one now."""
        for ref, run in self.in_flight.items():
            if run == (batch, claim):
                self.draining.add(ref)
                self.wake.set()
                return

    async def webhooks_changed(self) -> None:
        """An endpoint was added, changed or removed: the next batches hear of it."""
        self.listeners.forget()

    async def status(self) -> dict:
        """Tasks in flight, counting a finished one until its counts are written: 0 means
        the campaign's counters are whole (what a paused campaign waits for)."""
        return {"state": self.state,
                "tasks_in_flight": len(self.in_flight) + self.uncounted}

    async def _run(self) -> None:
        logs.bind(campaign_id=self.campaign_id)  # on every line the loop writes
        try:
            await self._drive()
        except Exception:
            log.exception("campaign %s: runner loop crashed; restarting it", self.campaign_id)
            self.state = "crashed"
            await asyncio.sleep(1)
            self.loop_task = asyncio.get_running_loop().create_task(self._run())

    async def _drive(self) -> None:
        db = self.runtime.database()
        metrics = SendMetrics.get()
        with tracing.span("campaign.runner", self.trace, campaign=self.campaign_id):
            # The batches' spans go under this one (it ends once the runner is going).
            self.trace = tracing.carrier()
            if not await self._start(db):
                return
        last_sample = last_sweep = time.monotonic()
        sweep_every = max(SWEEP_EVERY_S, self.settings.send_lease_s / 3)
        while True:
            if self.status_now in FINISHED or self.status_now is None:
                self.state = self.status_now or "deleted"
                await self._stop_tasks()
                await self._drain(db)
                break
            self.state = self.status_now
            if self.status_now == CampaignStatus.RUNNING:
                self.stopping = False
                await self._fill(db)
                if not self.in_flight and await self._complete_if_done(db):
                    continue
            elif self.status_now == CampaignStatus.PAUSED and self.in_flight:
                await self._stop_tasks()
            await self._wait_and_collect(db)
            now = time.monotonic()
            sample = None
            if now - last_sample >= SAMPLE_EVERY_S and not self.sampled:
                sample = ledger.progress_sample(self.totals)
                self.sampled, last_sample = True, now
                metrics.in_flight.set(len(self.in_flight), tags={"campaign": self.campaign_id})
            # Paused or stopping: what the stopped tasks counted goes in at once.
            await self._write_progress(db, sample,
                                       force=self.status_now != CampaignStatus.RUNNING)
            if self.poked or now - last_sweep >= sweep_every:
                await self._look_again(db, reload=self.poked)
                self.poked, last_sweep = False, now
        metrics.in_flight.set(0, tags={"campaign": self.campaign_id})
        await self.limiter.forget.remote(f"campaign:{self.campaign_id}")
        log.info("campaign %s: runner done (%s, %s)", self.campaign_id, self.state,
                 dict(self.totals))
        self._exit()

    async def _start(self, db) -> bool:
        """Load the campaign and where its audience was left, adopt what is in flight;
        False if the campaign is gone (the runner has ended)."""
        campaign = await campaigns.campaign_state(db, self.campaign_id)
        if campaign is None:
            self._exit()
            return False
        self.campaign = campaign
        self.status_now = campaign["status"]
        self.totals = Counter(campaign.get("counts", {}))  # (again after a loop crash)
        self.seq, position = await batches.last_position(db, self.campaign_id)
        self.cursor = None
        self.written_page = campaign.get(ledger.AUDIENCE_SEEN, -1)
        if not campaign.get("audience_done", True):
            self.cursor = AudienceCursor(
                campaign["audience"], campaign.get("audience_pages", 1), position,
                campaign.get(ledger.AUDIENCE_SEEN, -1), campaign["counts"].get("total", 0))
        await self._recover(db)
        log.info("campaign %s: runner started (%s, %d tasks in flight, %d batches due)",
                 self.campaign_id, self.status_now, len(self.in_flight), len(self.due))
        return True

    async def _recover(self, db) -> None:
        """After a (re)start: adopt the tasks still in flight, queue the pending batches."""
        running = await self.dispatcher.in_flight.remote(self.campaign_id)
        for batch in await batches.open_batches(db, self.campaign_id):
            if batch["_id"] in running:
                self._track(running[batch["_id"]][0], batch["_id"], batch["claim"])
            elif batch["status"] == BatchStatus.PENDING:
                heapq.heappush(self.due, (batch["not_before"].timestamp(), batch["_id"]))
            # claimed without a task: the sweep gives it back when its lease runs out

    async def _look_again(self, db, reload: bool) -> None:
        """Status from the record; expired leases back to pending; on a poke, batches
        queued from outside (signup confirmations); messages its channel did not
        confirm in time moved on to the next channel of the rule."""
        self.status_now = await campaigns.campaign_status(db, self.campaign_id)
        keep = {batch for batch, _ in self.in_flight.values()}
        for batch in await batches.requeue_expired(db, self.campaign_id, keep):
            heapq.heappush(self.due, (time.time(), batch))
        if self.status_now == CampaignStatus.RUNNING and self._confirm() is not None:
            await self._move_on(db)
        if reload:
            queued = {batch for _, batch in self.due}
            for batch in await batches.open_batches(db, self.campaign_id):
                if batch["status"] == BatchStatus.PENDING and batch["_id"] not in queued:
                    heapq.heappush(self.due, (batch["not_before"].timestamp(), batch["_id"]))

    async def _fill(self, db) -> None:
        options = self.campaign["launch"]
        if _not_yet(options):  # scheduled: the loop wakes each second, reads nothing
            return
        while self._sending() < options["workers"]:
            job = await self._next_job(db, options)
            if job is None:
                return
            job.listeners = await self.listeners.endpoints_for(db, webhooks.DELIVERY_STATUS)
            [ref] = await self.dispatcher.submit.remote(job)
            self._track(ref, job.batch_id, job.claim)

    def _sending(self) -> int:
        """Tasks in flight that still have recipients to take (the drained do not count)."""
        return len(self.in_flight) - len(self.draining)

    def _track(self, ref: ray.ObjectRef, batch: str, claim: str) -> None:
        self.in_flight[ref] = (batch, claim)
        self.finished[ref] = asyncio.wrap_future(ref.future())

    async def _next_job(self, db, options: dict) -> BatchJob | None:
        claim = batches.new_claim()
        lease_s = self.settings.send_lease_s
        if self.pending_closes and self.due and self.due[0][0] <= time.time():
            await self._write_progress(db, None)  # a batch due again is closed first
        while self.due and self.due[0][0] <= time.time():
            _, batch = heapq.heappop(self.due)
            issued = time.monotonic()  # before the write: the lease it sets ends later
            found = await batches.claim_batch(db, batch, claim, lease_s)
            if found is not None:
                return self._job(batch, claim, found["customer_ids"], found["attempt"], False,
                                 lease_s - (time.monotonic() - issued))
        while self.cursor is not None:
            size = min(self.cursor.tail_size(options["batch_size"], options["workers"]),
                       first_wave_size(self.seq, options["batch_size"], options["workers"]))
            read_at = self.cursor.read_at
            customers, position = await self.cursor.take(db, size)
            if customers:
                ids = [c["_id"] for c in customers]
                issued = time.monotonic()
                batch = await batches.insert_claimed_batch(
                    db, self.campaign_id, self.seq, ids, position, claim, lease_s)
                self.seq += 1
                if batch is None:
                    continue  # made before a restart; it is in the open batches
                job = self._job(batch, claim, ids, 0, True,
                                lease_s - (time.monotonic() - issued))
                job.customers, job.customers_read_at = customers, min(
                    read_at, self.cursor.read_at)
                return job
            if self.cursor.exhausted:
                await self._write_progress(db, None)
                await campaigns.set_audience_done(db, self.campaign_id)
                self.cursor = None
        return None

    def _confirm(self) -> fallback.Confirm | None:
        within = self.campaign.get("fallback_after_s")
        return fallback.Confirm(within, self.campaign.get("confirm") or fallback.DELIVERED
                                ) if within and self.campaign.get("fallback") else None

    async def _move_on(self, db) -> None:
        """Apply the statuses the rule's channels stored (a webhook's round may have met
        messages not recorded yet), then move due waits on to their next channel."""
        for name in (self.campaign.get("channel"), *self.campaign.get("fallback", ())):
            if channel_named(name).reports_statuses:
                await channel_statuses.apply_waiting(db, channel_named(name).name)
        while (batch := await fallback.move_due(db, self.campaign_id,
                                                await batches.database_now(db))):
            heapq.heappush(self.due, (time.time(), batch))
        self.awaiting = await fallback.awaiting(db, self.campaign_id)

    def _job(self, batch: str, claim: str, ids: list[str], attempt: int,
             fresh: bool, lease_left_s: float) -> BatchJob:
        options = self.campaign["launch"]
        limits = {}
        if options.get("rate_limit_per_s"):
            limits[f"campaign:{self.campaign_id}"] = options["rate_limit_per_s"]
        channel = channel_named(self.campaign.get("channel"))
        fallback = [channel_named(name) for name in self.campaign.get("fallback", ())]
        routes = [route for each in (channel, *fallback)
                  for route in each.routes(self.settings, self.runtime.endpoints)]
        limits.update(route_limits(routes))
        return BatchJob(
            campaign_id=self.campaign_id, batch_id=batch, claim=claim, attempt=attempt,
            customer_ids=ids, runtime=self.runtime, templates=self.campaign["templates"],
            connections=options["connections"], fresh=fresh, lease_left_s=lease_left_s,
            limits=limits,
            limiter=self.limiter if limits or len(routes) > 1 else None, trace=self.trace,
            tracking=self.campaign.get("tracking"), channel=channel.name, runner=self.me,
            cap=cap_for(self.campaign, self.settings),
            windows=windows_for(self.campaign, self.settings, channel.name),
            fallback=tuple((each.name, windows_for(self.campaign, self.settings, each.name))
                           for each in fallback),
            customers_choice=bool(self.campaign.get("customers_choice")),
            confirm=self._confirm(), channel_options=self.campaign.get("channel_options", {}))

    async def _complete_if_done(self, db) -> bool:
        if self.cursor is not None or (self.due and self.due[0][0] > time.time()):
            return False
        if self.due:
            return False  # due now: the next fill takes it
        if self.pending_closes:  # the last batches' closes, before they are counted
            await self._write_progress(db, None)
        if await batches.unfinished_batches(db, self.campaign_id) > 0:
            return False  # claims to recover (the sweep), or batches queued meanwhile
        if self._confirm() is not None:
            if self.awaiting or time.monotonic() - self.moved_on_at < 1.0:
                return False  # messages wait for their confirmation (the sweep moves
            await self._move_on(db)  # the due ones on); once none is left, look again
            self.moved_on_at = time.monotonic()
            if self.awaiting or self.due:
                return False
        await self._write_progress(db, None)
        await ledger.reconcile(db, self.campaign_id)
        state = await campaigns.campaign_state(db, self.campaign_id)
        counts, rounds = state["counts"], state.get("retry_rounds", 0)
        completed = await campaigns.change_status(
            db, self.campaign_id, (CampaignStatus.RUNNING,), CampaignStatus.COMPLETED,
            event=outbox.entry("campaign.completed",
                               {"campaign_id": self.campaign_id, "counts": counts,
                                "retry_round": rounds},
                               key=f"campaign.completed:{self.campaign_id}"
                                   + (f":retry{rounds}" if rounds else "")))
        campaign = await campaigns.campaign_state(db, self.campaign_id)
        if completed:
            await hand_on(db, "campaigns", self.campaign_id)
        await ledger.record_progress(db, self.campaign_id, {},
                                        ledger.progress_sample(campaign["counts"]))
        self.status_now = campaign["status"]
        return True

    async def _wait_and_collect(self, db) -> None:
        """Collect finished tasks, or sleep until one finishes, a task drains, the runner
        is poked or work is due."""
        self.wake.clear()
        timeout = SAMPLE_EVERY_S
        if (self.due and self.status_now == CampaignStatus.RUNNING
                and self._sending() < self.campaign["launch"]["workers"]):  # (else: spun)
            timeout = min(timeout, max(0.0, self.due[0][0] - time.time()))
        woken = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait([woken, *self.finished.values()], timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
        # Everything that finished meanwhile, in the same round.
        for ref in [ref for ref, done in self.finished.items() if done.done()]:
            await self._collect(db, ref)

    async def _collect(self, db, ref: ray.ObjectRef) -> None:
        batch, claim = self.in_flight.pop(ref)
        self.draining.discard(ref)
        try:
            summary = await self.finished.pop(ref)  # done: this only takes its result
        except TaskCancelledError:  # paused or cancelled: it counted what it sent itself
            webhook_poke()  # and may have stored delivery events: its summary is lost
            await batches.release_batch(db, batch, claim)  # if it never started
            heapq.heappush(self.due, (time.time(), batch))
            return
        except Exception as exc:  # the task failed (its worker died, or it is cut off):
            # its claim is not given back early, since the task may still be sending;
            # the lease lapses by the database's clock and the sweep requeues it.
            log.warning("campaign %s: send task for %s failed (%s); its lease will lapse",
                        self.campaign_id, batch, type(exc).__name__)
            return
        if summary.webhooks:
            webhook_poke()
        if summary.due_in_s is not None:
            heapq.heappush(self.due, (time.time() + summary.due_in_s, batch))
        if not summary.counted:
            self._add(summary)

    def _add(self, summary: BatchSummary) -> None:
        inc = summary.increments()
        self.pending_inc.update(inc)
        self.uncounted += 1
        if summary.close:
            self.pending_closes.append(summary.close)
        if summary.rollups:
            self.pending_rollups.merge(summary.rollups)
            for doc in summary.rollups.inc.values():
                FunnelMetrics.get().from_rollups(doc)
        for key, n in inc.items():
            if key.startswith("counts."):
                self.totals[key.removeprefix("counts.")] += n
        self.sampled = False

    async def _write_progress(self, db, sample: dict | None, force: bool = True) -> None:
        """Add what finished tasks counted to the campaign; unless `force`d, at most every
        PROGRESS_EVERY_S (the loop comes round at least each SAMPLE_EVERY_S)."""
        if not force and sample is None and (
                time.monotonic() - self.progress_at < PROGRESS_EVERY_S):
            return
        inc = {k: v for k, v in self.pending_inc.items() if v}
        counted = self.uncounted
        sets = None
        if self.cursor is not None and self.cursor.seen_page > self.written_page:
            sets = {"counts.total": self.cursor.seen,
                    ledger.AUDIENCE_SEEN: self.cursor.seen_page}
            self.written_page = self.cursor.seen_page
            self.totals["total"] = self.cursor.seen
        try:  # counters, roll-ups and the finished batches' closes: one command
            update = ledger.progress_update(inc, sample, sets)
            if update:
                self.pending_inc = Counter()
            closes, self.pending_closes = self.pending_closes, []
            if await record_round(db, self.campaign_id, update,
                                  self.pending_rollups.take() if self.pending_rollups
                                  else None, closes):
                self.progress_at = time.monotonic()
        finally:  # a failed write loses these counts (the completion recounts them) and
            # closes (their leases run out; a rerun finds every outcome recorded), and
            self.uncounted -= counted  # must not hold tasks_in_flight above 0 for good

    async def _stop_tasks(self) -> None:
        if self.in_flight and not self.stopping:
            self.stopping = True
            await self.dispatcher.cancel.remote(self.campaign_id)

    async def _drain(self, db) -> None:
        """Let stopped tasks record their last messages and give their batches back."""
        while self.in_flight:
            await self._wait_and_collect(db)
        await self._write_progress(db, None)

    def _exit(self) -> None:
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


def start_runner(campaign_id: str, runtime: Runtime, replace_older: bool = False):
    """The campaign's runner, created if it is not running (idempotent); its spans go
    under the caller's (the launch request's). With `replace_older`, a runner that runs
    with another runtime is replaced (the launcher; the campaign resumes from its
    ledger, as after a runner's crash)."""
    return registry.get_or_create(
        CampaignRunner, registry.runner_name(campaign_id), campaign_id, runtime,
        tracing.carrier(), resources=runtime.settings.actor_resources,
        fingerprint=runtime.fingerprint() if replace_older else None)


def find_runner(campaign_id: str):
    return registry.find(registry.runner_name(campaign_id))


async def status_changed(campaign_id: str, runtime: Runtime, *, running: bool) -> None:
    """A campaign's status changed in its record: its runner looks again now; a campaign
    that is running and has no runner (launched, resumed after its runner ended) gets
    one."""
    runner = find_runner(campaign_id)
    if runner is not None:
        await runner.poke.remote()
    elif running:
        start_runner(campaign_id, runtime)


async def webhooks_changed(db) -> None:
    """Tell the runners of active campaigns that webhook endpoints changed (fire and
    forget: a runner that is restarting reads them when it starts)."""
    for campaign_id in await campaigns.active_campaign_ids(db):
        runner = find_runner(campaign_id)
        if runner is not None:
            runner.webhooks_changed.remote()


async def tasks_in_flight(campaign_id: str) -> int | None:
    """The send tasks the campaign's runner has in flight; None without a runner (or
    while it restarts: the campaign's record is still right)."""
    runner = find_runner(campaign_id)
    if runner is None:
        return None
    try:
        return (await runner.status.remote())["tasks_in_flight"]
    except RayError:
        return None
