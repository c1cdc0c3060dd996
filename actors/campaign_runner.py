"""The campaign runner: one detached actor per running campaign, driving its fan-out.

It streams the audience from MongoDB into pending deliveries in the background (its
memory does not grow with the audience), and keeps at most `workers` send tasks in
flight with `ray.wait`: each time there is room it claims the next due batch (new
deliveries, retries whose backoff is over, claims whose task died) and hands the
claim to a task. It completes when every delivery is final. All progress lives in
MongoDB, so a restarted runner (`max_restarts=-1`) resumes where the record says.
Pause, resume and cancel are status changes in the record; the runner and its tasks
follow them.

Teardown: a runner kills itself when its campaign ends; `ray.kill` of
`campaign-<id>` in namespace `operator-comms` stops one by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

import ray

from actors.rate_limiter import rate_limiter
from actors.send_dispatcher import send_dispatcher
from app import campaigns
from app.config import Endpoints, Settings
from app.db import database
from app.send_tasks import NAMESPACE, SendMetrics
from app.sending import BatchJob

log = logging.getLogger("operator_comms.runner")
SAMPLE_EVERY_S = 1.0
SWEEP_EVERY_S = 5.0


def runner_name(campaign_id: str) -> str:
    return f"campaign-{campaign_id}"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class CampaignRunner:
    def __init__(self, campaign_id: str, settings: Settings, endpoints: Endpoints,
                 signing_secret: str):
        self.campaign_id = campaign_id
        self.settings = settings
        self.endpoints = endpoints
        self.signing_secret = signing_secret
        self.in_flight: dict[ray.ObjectRef, str] = {}
        self.wake = asyncio.Event()
        self.dispatcher = send_dispatcher(settings.actor_resources)
        self.state = "starting"
        self.loop_task = asyncio.get_running_loop().create_task(self._run())

    async def poke(self) -> None:
        """Status changed in the record (pause, resume, cancel): look again now."""
        self.wake.set()

    async def status(self) -> dict:
        return {"state": self.state, "tasks_in_flight": len(self.in_flight)}

    async def _run(self) -> None:
        try:
            await self._drive()
        except Exception:
            log.exception("campaign %s: runner loop crashed; restarting it", self.campaign_id)
            self.state = "crashed"
            await asyncio.sleep(1)
            self.loop_task = asyncio.get_running_loop().create_task(self._run())

    async def _drive(self) -> None:
        db = database(self.endpoints.mongodb_uri, self.settings.mongodb_db)
        metrics = SendMetrics.get()
        last_sample = last_sweep = 0.0
        await campaigns.requeue_expired(db, self.campaign_id)
        campaign = await campaigns.campaign_state(db, self.campaign_id)
        materializer = None
        if campaign is not None and not campaign.get("materialized"):
            materializer = asyncio.get_running_loop().create_task(self._materialize(db, campaign))
        while True:
            campaign = await campaigns.campaign_state(db, self.campaign_id)
            if campaign is None or campaign["status"] in ("completed", "cancelled", "failed"):
                self.state = campaign["status"] if campaign else "deleted"
                await self._drain()
                break
            options = campaign["settings"]
            now = time.monotonic()
            if now - last_sample >= SAMPLE_EVERY_S:
                await campaigns.sample_progress(db, self.campaign_id)
                metrics.in_flight.set(len(self.in_flight), tags={"campaign": self.campaign_id})
                last_sample = now
            if now - last_sweep >= SWEEP_EVERY_S:
                await campaigns.requeue_expired(db, self.campaign_id)
                last_sweep = now

            self.state = campaign["status"]
            if campaign["status"] == "running":
                while len(self.in_flight) < options["workers"]:
                    ids = await campaigns.due_pending(db, self.campaign_id, options["batch_size"])
                    claim = uuid.uuid4().hex
                    if not await campaigns.claim_batch(db, ids, claim,
                                                       self.settings.send_lease_s):
                        break
                    await self._submit(campaign, claim)
                done_creating = materializer is None or materializer.done()
                if done_creating and not self.in_flight and await self._complete_if_done(db):
                    continue
            await self._wait_for_work()
        if materializer is not None:
            materializer.cancel()
        metrics.in_flight.set(0, tags={"campaign": self.campaign_id})
        await rate_limiter(self.settings.actor_resources).forget.remote(
            f"campaign:{self.campaign_id}")
        self._exit()

    async def _materialize(self, db, campaign: dict) -> None:
        """Create the audience's deliveries while the first batches already go out."""
        await campaigns.materialize_audience(db, self.campaign_id, campaign["audience"])
        await campaigns.set_materialized(db, self.campaign_id)
        self.wake.set()

    async def _complete_if_done(self, db) -> bool:
        if await campaigns.unfinished(db, self.campaign_id) > 0:
            return False  # retries waiting for their backoff, or claims to recover
        await campaigns.reconcile(db, self.campaign_id)
        await campaigns.change_status(db, self.campaign_id, ("running",), "completed")
        await campaigns.sample_progress(db, self.campaign_id)
        return True

    async def _submit(self, campaign: dict, claim: str) -> None:
        options = campaign["settings"]
        limits = {}
        if options.get("rate_limit_per_s"):
            limits[f"campaign:{self.campaign_id}"] = options["rate_limit_per_s"]
        if self.settings.relay_rate_limit_per_s:
            limits["relay"] = self.settings.relay_rate_limit_per_s
        job = BatchJob(
            campaign_id=self.campaign_id, claim=claim, settings=self.settings,
            endpoints=self.endpoints, templates=campaign["templates"],
            signing_secret=self.signing_secret, connections=options["connections"],
            limits=limits,
        )
        [ref] = await self.dispatcher.submit.remote(job)
        self.in_flight[ref] = claim

    async def _wait_for_work(self) -> None:
        """Collect finished tasks (ray.wait), or sleep until poked or a second passed."""
        self.wake.clear()
        if self.in_flight:
            ready, _ = await asyncio.to_thread(
                ray.wait, list(self.in_flight), num_returns=1, timeout=SAMPLE_EVERY_S)
            for ref in ready:
                await self._collect(ref)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), SAMPLE_EVERY_S)

    async def _collect(self, ref: ray.ObjectRef) -> None:
        claim = self.in_flight.pop(ref)
        try:
            await ref  # already finished: this only fetches the result or its error
        except Exception as exc:  # the task failed for good: give its claim back
            db = database(self.endpoints.mongodb_uri, self.settings.mongodb_db)
            released = await campaigns.release(db, self.campaign_id, claim)
            log.warning("campaign %s: send task failed (%s); %d deliveries back to pending",
                        self.campaign_id, type(exc).__name__, released)

    async def _drain(self) -> None:
        """Let in-flight tasks notice the status change and finish their message."""
        while self.in_flight:
            ready, _ = await asyncio.to_thread(ray.wait, list(self.in_flight),
                                               num_returns=1, timeout=SAMPLE_EVERY_S)
            for ref in ready:
                await self._collect(ref)

    def _exit(self) -> None:
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


def start_runner(campaign_id: str, settings: Settings, endpoints: Endpoints,
                 signing_secret: str):
    """The campaign's runner, created if it is not running (idempotent)."""
    return CampaignRunner.options(
        name=runner_name(campaign_id), namespace=NAMESPACE, lifetime="detached",
        get_if_exists=True, resources=settings.actor_resources,
    ).remote(campaign_id, settings, endpoints, signing_secret)


def find_runner(campaign_id: str):
    try:
        return ray.get_actor(runner_name(campaign_id), namespace=NAMESPACE)
    except ValueError:
        return None
