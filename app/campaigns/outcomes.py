"""Outcomes of a batch's sends, written behind the sends in bulk with a bound on what
waits: a process killed mid-batch leaves at most twice `send_flush_every` messages sent
but unrecorded. A flush writes the outcomes (inserts for first attempts, updates for
retries), then the SMS parts that receipts will name, the addresses its failures put
on the suppression list (a hard bounce at once; a dead send counts toward
`soft_bounce_limit`; no command when there are none) and one webhook event; the
roll-ups gather over the batch and go back to the runner with its summary (a long
batch writes its own every ROLLUP_EVERY_S)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.audience import suppressions
from app.audience.suppressions import Entry
from app.campaigns import batches, caps, fallback, ledger
from app.campaigns.batch import BatchJob
from app.channels.base import Channel, Outcome
from app.core import bulk, rollups
from app.core.ids import delivery_id
from app.core.statuses import AttemptOutcome, DeliveryStatus
from app.integrations import webhooks

log = logging.getLogger("operator_comms.sending")
SENT, FAILED = AttemptOutcome.SENT, AttemptOutcome.FAILED
SKIPPED = DeliveryStatus.SKIPPED  # the outcome of a recipient who is gone


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
        self.bounced: dict[str, tuple[str, Entry]] = {}  # queued: delivery id -> (status, entry)
        self.waits: dict[str, dict] = {}  # queued: delivery id -> its fallback wait
        self.changed = asyncio.Condition()
        self.kick = asyncio.Event()
        self.error: BaseException | None = None
        self.closing = False
        self.flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def record(self, customer_id: str, previous: dict | None, outcome: Outcome,
                     latency_ms: float | None, message_id: str | None,
                     address: str | None = None, channel: Channel | None = None,
                     extra: dict[str, Any] | None = None, waits: str | None = None) -> str:
        """Queue one outcome (`address`: where it was sent, for the suppression list;
        `channel`: what carried it, the campaign's unless a fallback did; `extra`: more
        fields of the record, as the channels it tried; `waits`: what must confirm it
        in time, else a further channel of the rule takes it)."""
        did = delivery_id(self.job.campaign_id, customer_id)
        channel = channel or self.job.sends_by
        status, fields = self._fields(previous, outcome, latency_ms, message_id, channel)
        if extra:
            fields.update(extra)
        wait = None
        if waits and self.job.confirm is not None and fields["status"] == DeliveryStatus.SENT:
            fields["awaits"] = waits  # (a receipt or status then ends its fallback wait)
            wait = fallback.wait_doc(did, self.job.campaign_id, customer_id, channel.name,
                                     self.job.confirm, waits, fields["sent_at"])
        bounced = self._bounce(status, outcome, address, channel)
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
            if wait is not None:  # (sent, with a further channel waiting on it)
                self.waits[did] = wait
            if bounced is not None:
                self.bounced[did] = (status, bounced)
            self.unrecorded += 1
            if self.oldest is None:  # the flush loop may sleep with no deadline: wake it
                self.oldest = time.monotonic()  # to count this one's send_flush_s
                self.kick.set()
            if len(self.statuses) >= self.flush_every:
                self.kick.set()
        return status

    def _bounce(self, status: str, outcome: Outcome, address: str | None,
                channel: Channel) -> Entry | None:
        """The suppression a failure asks for: hard (the channel says the address is
        dead) or a soft bounce to count (every attempt failed transiently)."""
        if address is None or status not in (DeliveryStatus.FAILED, DeliveryStatus.DEAD):
            return None
        detail = {"campaign_id": self.job.campaign_id, "code": outcome.code}
        if status == DeliveryStatus.DEAD:
            return Entry(channel.name, address, suppressions.SOFT_BOUNCES, detail)
        hard = channel.hard_bounce(outcome)
        return Entry(channel.name, address, suppressions.HARD_BOUNCE,
                     {**detail, "status": hard}) if hard else None

    def _fields(self, previous: dict | None, outcome: Outcome, latency_ms: float | None,
                message_id: str | None, channel: Channel) -> tuple[str, dict]:
        at = batches.now()
        attempts = (previous or {}).get("attempts", 0) + 1
        fields: dict[str, Any] = {"last_code": outcome.code, "last_error": outcome.error,
                                  "last_attempt_at": at, "batch_id": self.job.batch_id,
                                  **self.identity}
        fields.update(channel.stored_fields())
        if self.job.fallback:  # which channel carried it, email too
            fields["channel"] = channel.name
        if outcome.status == SENT:
            status = DeliveryStatus.SENT
            fields.update(sent_at=at, latency_ms=latency_ms, message_id=message_id,
                          **channel.sent_fields(outcome))
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
        bounced, self.bounced = self.bounced, {}
        waits, self.waits = self.waits, {}
        self.oldest = None
        try:
            writes = bulk.Writes(self.db, one_command=False)
            # The fallback waits first: a receipt or status that settles a wait can only
            # find its delivery once the outcomes (or SMS parts) after it are written, so
            # it finds the wait too (written after, a wait would outlive it).
            fallback.stage_waits(writes, list(waits.values()))
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
            sent = [customer_id for did, (status, customer_id) in statuses.items()
                    if status == DeliveryStatus.SENT and did not in lost]
            if self.job.cap is not None and sent:  # (no command without a cap)
                await caps.note_sent(self.db, sent, batches.now())
            if bounced:  # (no command for a flush without failures)
                await self._suppress([entry for did, (status, entry) in bounced.items()
                                      if did not in lost])
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

    async def _suppress(self, entries: list[Entry]) -> None:
        """Hard bounces onto the list; soft ones counted, those at the limit onto it."""
        hard = [e for e in entries if e.reason == suppressions.HARD_BOUNCE]
        soft = [e for e in entries if e.reason == suppressions.SOFT_BOUNCES]
        if soft:
            hard += await suppressions.count_soft_bounces(
                self.db, soft, self.job.settings.soft_bounce_limit)
        await suppressions.suppress(self.db, hard)

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


