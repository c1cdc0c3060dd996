"""Sending one batch of a campaign: take the claimed deliveries, render, send over
reused SMTP connections, record each outcome. Pure asyncio; the Ray task in
`app.send_tasks` wraps it.

A batch is driven by `connections` SMTP connections at once, each reused for every
message it sends. Outcomes are written behind the sends by one flusher, in bulk
writes of whatever has queued up, and a connection waits while more than a small
bound of outcomes are not yet written. So a process that dies leaves at most that
many messages sent but unrecorded (2 per connection, at least 4), never a batch.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from app import campaigns
from app.config import Endpoints, Settings
from app.customers import template_variables
from app.db import close_clients, database
from app.mailer import AUTH, FAILED, SENT, Mail, Sender, SendOutcome, build_message
from app.mailer import message_id as make_message_id
from app.templates import TemplateProblem, compile_templates
from app.tokens import sign_customer_id

Reserve = Callable[[dict[str, float], float], Awaitable[float]]
Observe = Callable[[str, float | None], None]
STATUS_CHECK_S = 0.5


@dataclass
class BatchJob:
    """One batch: the deliveries the runner claimed for `claim` in this campaign."""

    campaign_id: str
    claim: str
    settings: Settings
    endpoints: Endpoints
    templates: dict[str, str | None]
    signing_secret: str
    connections: int
    limits: dict[str, float] = field(default_factory=dict)


def worker_identity(node_id: str | None = None) -> dict[str, Any]:
    node = (node_id or socket.gethostname())[:12]
    return {"node": node, "worker": f"{node[:8]}-{os.getpid()}", "worker_pid": os.getpid(),
            "host": socket.gethostname()}


class OutcomeRecorder:
    """Delivery outcomes written behind the sends, in bulk, with a bound on what waits.

    A flusher writes whatever outcomes have queued up in one bulk write, again and
    again, so a fast database sees one write per message and a slow one sees batches.
    A connection waits before its next send while more than `max_unrecorded` outcomes
    of this task are not written yet: that bounds what a killed process can leave sent
    but unrecorded. The campaign's counters are incremented at most every
    COUNTS_EVERY_S and at the end (the runner recounts from the deliveries anyway).
    """

    COUNTS_EVERY_S = 0.5

    def __init__(self, db: AsyncDatabase, job: BatchJob, identity: dict[str, Any],
                 max_unrecorded: int):
        self.db, self.job, self.identity = db, job, identity
        self.max_unrecorded = max(1, max_unrecorded)
        self.ops: list[UpdateOne] = []
        self.counts: Counter[str] = Counter()
        self.retries = 0
        self.totals: Counter[str] = Counter()
        self.unrecorded = 0
        self.changed = asyncio.Condition()
        self.flusher: asyncio.Task | None = None
        self.last_counts = time.monotonic()
        self.error: BaseException | None = None

    async def record(self, delivery: dict, outcome: SendOutcome, latency_ms: float | None,
                     message_id: str | None) -> str:
        status, update = self._update(delivery, outcome, latency_ms, message_id)
        async with self.changed:
            while self.unrecorded >= self.max_unrecorded and self.error is None:
                await self.changed.wait()
            if self.error is not None:
                raise self.error
            self.ops.append(UpdateOne({"_id": delivery["_id"], "claim": self.job.claim,
                                       "status": "sending"}, update))
            self.unrecorded += 1
            if status in campaigns.FINAL_DELIVERY:
                self.counts[status] += 1
            else:
                self.retries += 1
            self.totals[status if status != "pending" else "retry"] += 1
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.get_running_loop().create_task(self._flush_all())
        return status

    async def _flush_all(self) -> None:
        while self.ops:
            ops, self.ops = self.ops, []
            try:
                await self.db.deliveries.bulk_write(ops, ordered=False)
                if time.monotonic() - self.last_counts >= self.COUNTS_EVERY_S:
                    await self._write_counts()
            except BaseException as exc:  # surface it to the senders, stop sending
                self.error = exc
                raise
            finally:
                async with self.changed:
                    self.unrecorded -= len(ops)
                    self.changed.notify_all()

    async def _write_counts(self) -> None:
        counts, self.counts = self.counts, Counter()
        retries, self.retries = self.retries, 0
        self.last_counts = time.monotonic()
        await campaigns.add_counts(self.db, self.job.campaign_id, dict(counts), retries,
                                   self.identity["node"], self.identity["worker"])

    async def close(self) -> None:
        """Wait until every outcome and the counters are written."""
        while self.flusher is not None and not self.flusher.done():
            await asyncio.wait({self.flusher})
            if self.ops and self.error is None:
                self.flusher = asyncio.get_running_loop().create_task(self._flush_all())
        if self.error is not None:
            raise self.error
        await self._write_counts()

    def _update(self, delivery: dict, outcome: SendOutcome, latency_ms: float | None,
                message_id: str | None) -> tuple[str, dict]:
        at = campaigns.now()
        fields: dict[str, Any] = {"last_code": outcome.code, "last_error": outcome.error,
                                  "last_attempt_at": at, **self.identity}
        attempts = delivery.get("attempts", 0) + 1
        if outcome.status == SENT:
            status = "sent"
            fields.update(sent_at=at, latency_ms=latency_ms, message_id=message_id)
        elif outcome.status == FAILED:
            status = "failed"
        elif outcome.status == "skipped":
            status, attempts = "skipped", attempts - 1
        elif attempts >= self.job.settings.send_max_attempts:
            status = "dead"
        else:
            status = "pending"
            delay = campaigns.backoff_s(attempts, self.job.settings.retry_backoff_s)
            fields.update(claim=None, next_attempt_at=at + timedelta(seconds=delay))
        fields["status"] = status
        return status, {"$set": {**fields, "attempts": attempts}}


async def run_batch(job: BatchJob, *, node_id: str | None = None, reserve: Reserve | None = None,
                    observe: Observe | None = None) -> dict[str, Any]:
    """Send one batch; return what happened (counts by status, identity)."""
    db = database(job.endpoints.mongodb_uri, job.settings.mongodb_db)
    identity = worker_identity(node_id)
    try:
        return await _run(db, job, identity, reserve, observe)
    finally:
        await close_clients()


async def _run(db: AsyncDatabase, job: BatchJob, identity: dict[str, Any],
               reserve: Reserve | None, observe: Observe | None) -> dict[str, Any]:
    lease_s = job.settings.send_lease_s
    # A message goes out only while this task knows its lease holds: until lease_s after
    # the last renewal was *issued* (a bound the database can only exceed), less a margin
    # for clocks of different nodes. Past it, the runner may have requeued the claim and
    # another task may be sending the same deliveries: this one stops.
    margin_s = min(2.0, lease_s / 4)
    lease = {"until": time.time() + lease_s - margin_s}
    claimed = await campaigns.claimed(db, job.campaign_id, job.claim, identity, lease_s)
    summary: dict[str, Any] = {"claimed": len(claimed), **identity}
    if not claimed:
        return summary
    compiled = compile_templates(job.templates["subject"] or "", job.templates["body_text"] or "",
                                 job.templates.get("body_html"))
    ids = [d["customer_id"] for d in claimed]
    customers = {c["_id"]: c async for c in db.customers.find({"_id": {"$in": ids}})}
    recorder = OutcomeRecorder(db, job, identity,
                               max_unrecorded=max(4, 2 * job.connections))
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for delivery in claimed:
        queue.put_nowait(delivery)
    stop = asyncio.Event()
    stop_reason: list[str] = []

    async def watch() -> None:
        # Renew the lease and notice pause, cancel or failure of the campaign.
        last_renewal = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(STATUS_CHECK_S)
            campaign = await db.campaigns.find_one({"_id": job.campaign_id}, {"status": 1})
            if campaign is None or campaign["status"] != "running":
                stop_reason.append(campaign["status"] if campaign else "deleted")
                stop.set()
            elif time.monotonic() - last_renewal > lease_s / 3:
                issued = time.time()
                held = await campaigns.renew_lease(db, job.campaign_id, job.claim, lease_s)
                if held == 0 and not queue.empty():  # requeued: another task has them
                    stop_reason.append("lease lost")
                    stop.set()
                lease["until"] = issued + lease_s - margin_s
                last_renewal = time.monotonic()

    async def connection() -> None:
        sender = Sender(job.settings, job.endpoints)
        try:
            while not stop.is_set():
                try:
                    delivery = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                outcome, latency_ms, mid = await _send_one(delivery, sender)
                if outcome is None:  # stopped: rate-limiter wait cut short, or lease lapsed
                    await campaigns.release(db, job.campaign_id, job.claim, [delivery["_id"]])
                    return
                if outcome.status == AUTH:
                    stop_reason.append("auth")
                    stop.set()
                    await campaigns.release(db, job.campaign_id, job.claim, [delivery["_id"]])
                    await campaigns.fail_campaign(
                        db, job.campaign_id, f"SMTP authentication failed: {outcome.error}")
                    return
                status = await recorder.record(delivery, outcome, latency_ms, mid)
                if observe:
                    observe(status, latency_ms)
        finally:
            await sender.close()

    async def _send_one(delivery: dict, sender: Sender
                        ) -> tuple[SendOutcome | None, float | None, str | None]:
        customer = customers.get(delivery["customer_id"])
        if customer is None or customer.get("unsubscribed"):
            return SendOutcome("skipped", None, "unsubscribed or removed"), None, None
        mid = make_message_id(delivery["_id"], job.settings.mail_from)
        try:
            mail = _compose(job, compiled, customer, mid)
        except TemplateProblem as exc:
            return SendOutcome(FAILED, None, str(exc)[:300]), None, None
        if job.limits and reserve is not None:
            wait = await reserve(job.limits, 1)
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                    return None, None, None
                except TimeoutError:
                    pass
        if time.time() >= lease["until"]:  # renewals fell behind (an overloaded database)
            stop_reason.append("lease lapsed")
            stop.set()
            return None, None, None
        started = time.perf_counter()
        outcome = await sender.send(build_message(mail, job.settings.mail_from))
        return outcome, (time.perf_counter() - started) * 1000, mid

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(*(connection() for _ in range(max(1, job.connections))))
        await recorder.close()
    finally:
        stop.set()
        watcher.cancel()
    leftovers = [queue.get_nowait()["_id"] for _ in range(queue.qsize())]
    if leftovers:
        await campaigns.release(db, job.campaign_id, job.claim, leftovers)
    summary.update(dict(recorder.totals), released=len(leftovers),
                   stopped=stop_reason[0] if stop_reason else None)
    return summary


def _compose(job: BatchJob, compiled, customer: dict, mid: str) -> Mail:
    token = sign_customer_id(customer["_id"], job.signing_secret)
    unsubscribe_url = f"{job.settings.public_url.rstrip('/')}/unsubscribe/{token}"
    variables = {**template_variables(customer), "unsubscribe_url": unsubscribe_url}
    subject, text, html = compiled.render(variables)
    return Mail(to_email=customer["email"], to_name=customer.get("name") or "",
                subject=subject, text=text, html=html, message_id=mid,
                unsubscribe_url=unsubscribe_url)


