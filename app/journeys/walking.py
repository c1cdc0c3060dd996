"""What one journey shard does with a round of events or due timers (no Ray here: the
shard actor, `actors.journeys`, holds the timers and calls these).

A round costs a few commands whatever its size: one read of the enrollments it moves,
one of their customers, one bulk write of the moves (compare-and-swap each), the
sends, one bulk write taking them out of the outboxes, one of the counts. Each
returns the timers the moves set, for the shard's heap.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.audience.customers import SEND_FIELDS
from app.core.runtime import Runtime
from app.core.windows import Window
from app.journeys import engine, enrollments, store
from app.journeys.definition import Journey
from app.journeys.engine import Entered, EventHeard, TimerFired
from app.journeys.sending import OfferMaker, Sender

log = logging.getLogger("operator_comms.journeys")
Timer = tuple[float, str, int]  # (due, enrollment id, seq)
CUSTOMER_FIELDS = {**SEND_FIELDS, "timezone": 1, "vars": 1}
REFRESH_S = 10.0


class ShardWork:
    def __init__(self, runtime: Runtime, shard: int, shards: int,
                 offers: OfferMaker | None = None):
        self.runtime = runtime
        self.shard, self.shards = shard, shards
        self.buckets = enrollments.buckets_of(shard, shards)
        self.journeys: dict[str, Journey] = {}  # version id -> definition (immutable)
        self.entries: dict[str, list[dict[str, Any]]] = {}  # event type -> published
        self.refreshed = float("-inf")
        self.sender = Sender(runtime, offers)
        self.windows = {channel: (Window.parse(text),)  # quiet hours of each channel
                        for channel, text in runtime.settings.send_windows.items() if text}
        self.making: set[str] = set()  # enrollments whose outbox a round is making now
        self.at: dict[tuple[str, str], int] = {}  # (version id, step) -> customers there
        self.ways: dict[tuple[str, str, str], int] = {}  # (journey, step, way) -> since read
        self.counts = {"moves": 0, "entered": 0, "sends": 0, "rounds": 0, "lost_cas": 0}

    @property
    def db(self) -> AsyncDatabase:
        return self.runtime.database()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def refresh(self, force: bool = False) -> None:
        """The published versions (what events enter), read again every REFRESH_S."""
        if not force and time.monotonic() - self.refreshed < REFRESH_S:
            return
        entries: dict[str, list[dict[str, Any]]] = {}
        for doc in await store.published(self.db):
            self.journeys.setdefault(doc["_id"], Journey.model_validate(doc["definition"]))
            entries.setdefault(self.journeys[doc["_id"]].entry.event, []).append(doc)
        self.entries, self.refreshed = entries, time.monotonic()

    async def _definitions(self, version_ids: set[str]) -> None:
        missing = [v for v in version_ids if v not in self.journeys]
        if missing:
            self.journeys.update(await store.definitions(self.db, missing))

    async def start(self) -> list[Timer]:
        """At the shard's (re)start: its counts recounted, outboxes a kill left made,
        and every waiting customer's timer."""
        await self.refresh(force=True)
        timers, self.at = await enrollments.load(self.db, self.shard, self.buckets)
        await self.flush_outboxes()
        return timers

    async def recount(self) -> None:
        """Counts set from the enrollments again (after an archive moved many at once)."""
        _, self.at = await enrollments.load(self.db, self.shard, self.buckets)

    def take_ways(self) -> dict[tuple[str, str, str], int]:
        """The ways out of steps counted since the last call (for the metrics)."""
        ways, self.ways = self.ways, {}
        return ways

    async def flush_outboxes(self) -> int:
        """Make what outboxes hold (after a kill, or a transient failure)."""
        pending = await enrollments.with_outbox(self.db, self.buckets)
        await self._make(pending)
        return len(pending)

    async def hear(self, events: list[dict[str, Any]]) -> list[Timer]:
        """A round of stored events: entries, waits that end, conversions."""
        await self.refresh()
        at = self.now()
        customer_ids = list({e["customer_id"] for e in events})
        customers = {doc["_id"]: doc for doc in await enrollments.by_ids(
            self.db.customers, "_id", customer_ids, CUSTOMER_FIELDS)}
        customers.update({_id: {"_id": _id} for _id in customer_ids  # a chat nobody proved
                          if enrollments.is_session_member(_id)})  # a customer's: no record
        inside = await enrollments.waiting_customers(self.db, customer_ids)
        await self._definitions({e["version_id"] for e in inside})
        tally = enrollments.Tally()
        updates, deferred, moved_now = [], [], set()
        by_customer: dict[str, list[dict[str, Any]]] = {}
        for enrollment in inside:
            by_customer.setdefault(enrollment["customer_id"], []).append(enrollment)
        for event in sorted(events, key=lambda e: e.get("at") or at):
            for enrollment in by_customer.get(event["customer_id"], ()):
                journey = self.journeys[enrollment["version_id"]]
                heard = event["type"] in journey.exit_on or (
                    enrollment.get("waiting_for") == event["type"]
                    and event.get("enrollment_id") in (None, enrollment["_id"]))
                if not heard:
                    continue
                if enrollment["_id"] in moved_now:  # one move per round; the next waits
                    deferred.append(event["_id"])
                    continue
                move = engine.move(journey, customers.get(enrollment["customer_id"], {}),
                                   at=enrollment["step"], trigger=EventHeard(event["type"]),
                                   now=at, enrollment_id=enrollment["_id"],
                                   default_timezone=self.runtime.settings.default_timezone,
                                   windows=self.windows)
                updates.append((enrollment, move))
                moved_now.add(enrollment["_id"])
        new = []
        for event in events:
            customer = customers.get(event["customer_id"])
            for version in self.entries.get(event["type"], ()):
                if customer is None:
                    continue
                journey = self.journeys[version["_id"]]
                _id = enrollments.enrollment_id(version["_id"], customer["_id"], event["_id"],
                                                journey.reentry)
                move = engine.move(journey, customer, at=None, trigger=Entered(), now=at,
                                   enrollment_id=_id,
                                   default_timezone=self.runtime.settings.default_timezone,
                                   windows=self.windows)
                new.append((enrollments.new_enrollment(_id, version, customer["_id"], event,
                                                       move, at), move))
        entered = await enrollments.enrol(self.db, [doc for doc, _ in new])
        kept = {doc["_id"] for doc in entered}
        for doc, move in new:
            if doc["_id"] in kept:
                tally.entered(doc["version_id"], move)
        written = await self._apply(updates, at, tally)
        await self._make([*entered, *written])
        await enrollments.mark_taken(self.db, [e["_id"] for e in events
                                               if e["_id"] not in set(deferred)])
        await self._count(tally)
        self.counts["entered"] += len(entered)
        self.counts["rounds"] += 1
        return _timers([*entered, *written])

    async def fire(self, due: list[Timer]) -> list[Timer]:
        """A round of due timers: each still-current one moves its customer on."""
        at = self.now()
        seqs = {_id: seq for _, _id, seq in due}
        found = [e for e in await enrollments.active_of(self.db, list(seqs))
                 if e["status"] == enrollments.ACTIVE and e["seq"] == seqs[e["_id"]]
                 and e.get("due_at") is not None
                 and e["due_at"].timestamp() <= at.timestamp() + 0.001]
        if not found:
            return []
        await self._definitions({e["version_id"] for e in found})
        reading = [e["customer_id"] for e in found if engine.reads_customer(
            self.journeys[e["version_id"]], e["step"], TimerFired(), self.windows)]
        customers = {doc["_id"]: doc for doc in await enrollments.by_ids(
            self.db.customers, "_id", reading, CUSTOMER_FIELDS)} if reading else {}
        updates = [(e, engine.move(self.journeys[e["version_id"]],
                                   customers.get(e["customer_id"], {}), at=e["step"],
                                   trigger=TimerFired(), now=at, enrollment_id=e["_id"],
                                   default_timezone=self.runtime.settings.default_timezone,
                                   windows=self.windows))
                   for e in found]
        tally = enrollments.Tally()
        written = await self._apply(updates, at, tally)
        await self._make(written)
        await self._count(tally)
        self.counts["rounds"] += 1
        return _timers(written)

    async def _count(self, tally: enrollments.Tally) -> None:
        tally.fold_into(self.at, self.ways)
        await tally.write(self.db, self.shard)

    async def _apply(self, updates: list[tuple[dict, engine.Move]], at: datetime,
                     tally: enrollments.Tally) -> list[dict[str, Any]]:
        mark = uuid.uuid4().hex[:16]  # this round's, on every enrollment it moves
        writes = {e["_id"]: (e, move, enrollments.move_update(e, move, at, mark))
                  for e, move in updates}
        written = await enrollments.apply_moves(self.db, [w for _, _, w in writes.values()])
        for doc in written:
            before, move, _ = writes[doc["_id"]]
            tally.moved(doc["version_id"], before.get("step"), move, before.get("arms"))
        self.counts["moves"] += len(written)
        self.counts["lost_cas"] += len(writes) - len(written)
        return written

    async def _make(self, docs: list[dict[str, Any]]) -> None:
        """Make the outboxes of these enrollments, but not of those another round of
        this shard is making (the sweep's read may find one a round has not cleared)."""
        with_items = [d for d in docs if d.get("outbox") and d["_id"] not in self.making]
        if not with_items:
            return
        ids = {d["_id"] for d in with_items}
        self.making |= ids
        try:
            await self._definitions({d["version_id"] for d in with_items})
            done = await self.sender.make(self.db, with_items, self.journeys)
            held = {d["_id"]: (d["seq"], {item["key"] for item in d["outbox"]})
                    for d in with_items}
            await enrollments.clear_outbox(self.db, {
                _id: (held[_id][0], keys, set(keys) >= held[_id][1])
                for _id, keys in done.items()})
        finally:
            self.making -= ids
        self.counts["sends"] += sum(len(keys) for keys in done.values())


def _timers(docs: list[dict[str, Any]]) -> list[Timer]:
    return [(d["due_at"].timestamp(), d["_id"], d["seq"]) for d in docs
            if d.get("status") == enrollments.ACTIVE and d.get("due_at") is not None]
