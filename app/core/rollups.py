"""Report roll-ups, kept as outcomes are written: reports read these, not deliveries.

`rollups` holds one document per campaign and day, `_id` `<campaign>|<YYYY-MM-DD>`,
`kind: "campaign"`:

- `counts.<status>`: the deliveries created that day, by their current status (a
  retry moves its delivery from `pending` to the new status, on its creation day);
- `retries`: attempts beyond each delivery's first;
- `latency.<ms>`: sent deliveries by send latency in fixed buckets (1 ms wide below
  100 ms, 10 ms below 1 s, 100 ms below 10 s, 1 s above): a percentile read from
  them is within one bucket of the exact one (exact for whole milliseconds < 100);
- `first_sent`, `last_sent`, `failures.<code>`, `by_node.<node>`, `by_worker.<worker>`;
- `emails`, `sms_segments`: the campaign's emails, or SMS parts, sent on that day (by
  send day: the billing cost);
- `receipts.<delivered|undeliverable>`: SMS deliveries settled by a delivery receipt;
- `opened`, `clicked`: the deliveries created that day that have been opened / clicked
  (each once, at its first hit; `app.channels.email.tracking`).

and one per day for conversions, `_id` `conversions|<day>`, `kind: "conversions"`:
`n.<source>` and `monthly.<source>` (the monthly value of the plans taken).

and one per day for the chat and its offers, `_id` `chat|<day>`, `kind: "chat"`:
- `sessions`: the sessions created that day; each of them counted once more where it
  is now, `completed` (ended) or `open_at.<node>`: a turn that moves it moves that
  count (from the state before the turn, which the turn's compare-and-swap makes
  exact), on its creation day;
- `events.<type>`: the reported events (`REPORTED_EVENTS`) stored that day;
- `offers_sent`, `accepted`, `accept_s.<s>`: counter-offers sent and accepted that
  day, with the time to accept in the same kind of buckets (seconds).

A send task's increments go back to the runner in its summary, and the runner writes
a round's with the campaign's counters and the batches' closes in one command
(`app.campaigns.rounds`; a batch that runs long writes its own as it goes); a
conversion adds its own when it is first stored; a chat
replica adds its sessions' moves with its summaries, every second, and its events'
when it stores them; the marketing actor its offers' with each batch. A writer that
dies between its two writes leaves a drift, which `fold` + `reconcile` repair: at a
campaign's completion (from its deliveries) and on demand for a period (the API's
`POST /api/reports/reconcile`, `operator-comms reconcile`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from app.core.bulk import Writes
from app.core.statuses import DeliveryStatus

CAMPAIGN = "campaign"
CONVERSIONS = "conversions"
CHAT = "chat"
REPORTED_EVENTS = ("handoff_requested", "offer_refused")
MAX_LATENCY_MS = 600_000
STATUSES = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.DEAD,
            DeliveryStatus.PENDING, DeliveryStatus.SKIPPED)
DELIVERY_FIELDS = {"campaign_id": 1, "status": 1, "attempts": 1, "created_at": 1,
                   "sent_at": 1, "latency_ms": 1, "last_code": 1, "node": 1, "worker": 1,
                   "opened.first": 1, "clicked.first": 1, "receipt": 1, "segments": 1,
                   "channel": 1, "tried": 1}
ENGAGEMENT = ("opened", "clicked")
FUNNEL_STAGE = {"opened": "read", "clicked": "clicked"}  # an email's open is its read
FUNNEL = ("sent", "delivered", "read", "clicked", "undeliverable")


def channel_of(doc: dict) -> str:
    """The channel that carried a delivery (or one of its earlier tries): recorded on
    every delivery of a fallback rule and of the messaging channels; an SMS has parts."""
    channel = doc.get("channel")
    if channel:
        return key_safe(channel)
    return "sms" if doc.get("segments") else "email"


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def day_of(at: datetime) -> str:
    return _aware(at).astimezone(UTC).date().isoformat()


def bucket(latency_ms: float) -> int:
    """The lower bound of the bucket this value (ms; seconds for times to accept) falls in."""
    ms = min(max(0.0, latency_ms), MAX_LATENCY_MS)
    width = 1 if ms < 100 else 10 if ms < 1000 else 100 if ms < 10_000 else 1000
    return int(ms // width) * width


def percentile(histogram: dict[str, int] | dict[int, int], p: float) -> float | None:
    """The nearest-rank percentile of a bucket histogram, as its bucket's lower bound."""
    counts = sorted((int(k), n) for k, n in histogram.items() if n > 0)
    total = sum(n for _, n in counts)
    if not total:
        return None
    rank, seen = max(1, math.ceil(p * total)), 0
    for lower, n in counts:
        seen += n
        if seen >= rank:
            return float(lower)
    return float(counts[-1][0])


def key_safe(text: Any) -> str:
    return str(text if text is not None else "?").replace(".", "_").replace("$", "_")


def campaign_rollup_id(campaign_id: str, day: str) -> str:
    return f"{campaign_id}|{day}"


def session_place(state: dict | None) -> str:
    """Where a session counts in its day's chat roll-up: ended, or open at its node."""
    state = state or {}
    return "completed" if state.get("ended") else f"open_at.{key_safe(state.get('node'))}"


class Increments:
    """The roll-up changes of a set of outcomes (or chat moves), merged per document."""

    def __init__(self) -> None:
        self.inc: dict[str, defaultdict[str, float]] = {}
        self.min: dict[str, dict[str, datetime]] = {}
        self.max: dict[str, dict[str, datetime]] = {}
        self.keys: dict[str, dict[str, str]] = {}

    def _doc(self, campaign_id: str, day: str) -> str:
        _id = campaign_rollup_id(campaign_id, day)
        if _id not in self.inc:
            self.inc[_id] = defaultdict(float)
            self.keys[_id] = {"kind": CAMPAIGN, "campaign_id": campaign_id, "day": day}
        return _id

    def _chat(self, day: str) -> defaultdict[str, float]:
        _id = f"{CHAT}|{day}"
        if _id not in self.inc:
            self.inc[_id] = defaultdict(float)
            self.keys[_id] = {"kind": CHAT, "day": day}
        return self.inc[_id]

    def session_created(self, created_at: datetime, state: dict | None) -> None:
        inc = self._chat(day_of(created_at))
        inc["sessions"] += 1
        inc[session_place(state)] += 1

    def session_moved(self, created_day: str | None, before: dict | None,
                      after: dict | None) -> None:
        """A turn took a session from `before` to `after` (states)."""
        was, now = session_place(before), session_place(after)
        if created_day is None or was == now:
            return
        inc = self._chat(created_day)
        inc[was] -= 1
        inc[now] += 1

    def event(self, event: dict) -> None:
        if event.get("type") in REPORTED_EVENTS:
            self._chat(day_of(event["created_at"]))[f"events.{event['type']}"] += 1

    def offers_sent(self, at: datetime, n: int) -> None:
        if n:
            self._chat(day_of(at))["offers_sent"] += n

    def offer_accepted(self, sent_at: datetime | None, accepted_at: datetime) -> None:
        inc = self._chat(day_of(accepted_at))
        inc["accepted"] += 1
        if sent_at is not None:
            waited = (_aware(accepted_at) - _aware(sent_at)).total_seconds()
            inc[f"accept_s.{bucket(waited)}"] += 1

    def merge(self, other: Increments) -> None:
        """Add `other` to these (increments that could not be written go back)."""
        for _id, inc in other.inc.items():
            mine = self.inc.setdefault(_id, defaultdict(float))
            self.keys.setdefault(_id, other.keys[_id])
            for key, value in inc.items():
                mine[key] += value
        Extremes = dict[str, dict[str, datetime]]
        pairs: tuple[tuple[Extremes, Any, Extremes], ...] = (
            (other.min, min, self.min), (other.max, max, self.max))
        for source, pick, target in pairs:
            for _id, fields in source.items():
                have = target.setdefault(_id, {})
                for key, at in fields.items():
                    have[key] = pick(have.get(key, at), at)

    def take(self) -> Increments:
        """Everything gathered so far, as a new object; this one is left empty and goes
        on gathering (writers that hold it mid-await record into it, not into what was
        taken)."""
        taken = Increments()
        taken.inc, taken.min, taken.max, taken.keys = self.inc, self.min, self.max, self.keys
        self.inc, self.min, self.max, self.keys = {}, {}, {}, {}
        return taken

    def __bool__(self) -> bool:
        return bool(self.inc)

    def outcome(self, campaign_id: str, new: dict, previous: dict | None) -> None:
        """One delivery's new record (`new`), replacing `previous` (None: its first)."""
        created = (previous or new).get("created_at") or new["last_attempt_at"]
        _id = self._doc(campaign_id, day_of(created))
        inc = self.inc[_id]
        inc[f"counts.{new['status']}"] += 1
        if previous is not None:
            inc[f"counts.{previous['status']}"] -= 1
        inc["retries"] += _retries(new) - (_retries(previous) if previous else 0)
        if new["status"] == DeliveryStatus.SENT:
            self.sent(campaign_id, _id, new)
            inc[f"funnel.{channel_of(new)}.sent"] += 1
        elif new["status"] in (DeliveryStatus.FAILED, DeliveryStatus.DEAD):
            inc[f"failures.{key_safe(new.get('last_code'))}"] += 1
        if previous is not None and previous["status"] == DeliveryStatus.SENT:
            inc[f"funnel.{channel_of(previous)}.sent"] -= 1  # (a bounce after the send)
        if previous is None:  # a fold from the record: its opens and clicks so far
            for kind in ENGAGEMENT:
                if (new.get(kind) or {}).get("first") is not None:
                    inc[kind] += 1
            if new.get("receipt"):
                inc[f"receipts.{new['receipt']}"] += 1
            self.funnel_of(inc, new, sent=False)  # (its send counted above)
            for earlier in new.get("tried") or ():  # sent by a channel a fallback followed:
                if earlier.get("sent_at") is not None:  # billed, and in its channel's
                    self.billed(campaign_id, earlier)  # funnel, all the same
                    self.funnel_of(inc, earlier, sent=True)
        sends = [new] if previous is not None else [*(new.get("tried") or ()), new]
        for send in sends:  # (from the record: earlier channels' sends were sends too)
            if send.get("sent_at") is not None:  # sent (and perhaps bounced since)
                self.sent_between(_id, send["sent_at"])

    def sent_between(self, _id: str, sent_at: datetime) -> None:
        """A send at `sent_at` widens its roll-up's first and last send times."""
        first = self.min.setdefault(_id, {})
        last = self.max.setdefault(_id, {})
        first["first_sent"] = min(first.get("first_sent", sent_at), sent_at)
        last["last_sent"] = max(last.get("last_sent", sent_at), sent_at)

    def reopened(self, campaign_id: str, previous: dict) -> None:
        """A failed or dead delivery set pending again (retry failed): its outcome, its
        failure code and its retries are taken back; its next outcome adds anew."""
        created = previous.get("created_at") or previous["last_attempt_at"]
        inc = self.inc[self._doc(campaign_id, day_of(created))]
        inc[f"counts.{previous['status']}"] -= 1
        inc[f"counts.{DeliveryStatus.PENDING}"] += 1
        inc["retries"] -= _retries(previous)
        inc[f"failures.{key_safe(previous.get('last_code'))}"] -= 1

    def receipted(self, campaign_id: str, created_at: datetime, outcome: str,
                  channel: str = "sms") -> None:
        """A delivery receipt or status settled it (`delivered`, `undeliverable`)."""
        inc = self.inc[self._doc(campaign_id, day_of(created_at))]
        inc[f"receipts.{outcome}"] += 1
        inc[f"funnel.{key_safe(channel)}.{outcome}"] += 1

    def engaged(self, campaign_id: str, created_at: datetime, kind: str,
                channel: str = "email") -> None:
        """A delivery's first open (or read) or click (`kind`), on its creation day."""
        inc = self.inc[self._doc(campaign_id, day_of(created_at))]
        inc[kind] += 1
        inc[f"funnel.{key_safe(channel)}.{FUNNEL_STAGE[kind]}"] += 1

    @staticmethod
    def funnel_of(inc: defaultdict[str, float], doc: dict, sent: bool) -> None:
        """A delivery's (or an earlier channel's) funnel stages, from its record."""
        channel = channel_of(doc)
        if sent:
            inc[f"funnel.{channel}.sent"] += 1
        if doc.get("receipt"):
            inc[f"funnel.{channel}.{doc['receipt']}"] += 1
        for kind in ENGAGEMENT:
            if (doc.get(kind) or {}).get("first") is not None:
                inc[f"funnel.{channel}.{FUNNEL_STAGE[kind]}"] += 1

    def sent(self, campaign_id: str, _id: str, doc: dict, sign: int = 1,
             billing: bool = True) -> None:
        """What a send adds (sign -1: takes back): latency, node, worker, billed email
        (`billing=False`: all but the bill, for a send that was made and is moved on)."""
        inc = self.inc[_id]
        if doc.get("latency_ms") is not None:
            inc[f"latency.{bucket(doc['latency_ms'])}"] += sign
        inc[f"by_node.{key_safe(doc.get('node'))}"] += sign
        inc[f"by_worker.{key_safe(doc.get('worker'))}"] += sign
        if billing:
            self.billed(campaign_id, doc, sign)

    def moved_on(self, campaign_id: str, previous: dict) -> None:
        """A sent delivery its channel did not confirm, set pending for the next channel
        of its campaign's fallback rule: its outcome and what its send added are taken
        back, but not the bill (the message was sent); its next outcome adds anew."""
        created = previous.get("created_at") or previous["last_attempt_at"]
        _id = self._doc(campaign_id, day_of(created))
        inc = self.inc[_id]
        inc[f"counts.{previous['status']}"] -= 1
        inc[f"counts.{DeliveryStatus.PENDING}"] += 1
        inc["retries"] -= _retries(previous)
        if previous.get("sent_at") is not None:
            self.sent(campaign_id, _id, previous, sign=-1, billing=False)
        if previous.get("receipt"):
            inc[f"receipts.{previous['receipt']}"] -= 1
        for kind in ENGAGEMENT:
            if (previous.get(kind) or {}).get("first") is not None:
                inc[kind] -= 1

    def billed(self, campaign_id: str, doc: dict, sign: int = 1) -> None:
        """Billing counts a send on the day it happened: an email, an SMS's parts, or a
        message of another channel."""
        billed = self.inc[self._doc(campaign_id, day_of(doc["sent_at"]))]
        channel = doc.get("channel")
        if doc.get("segments"):
            billed["sms_segments"] += sign * doc["segments"]
        elif channel in (None, "email"):
            billed["emails"] += sign
        else:  # a Telegram message, say: neither an email nor SMS parts
            billed[f"messages.{key_safe(channel)}"] += sign

    def bounced(self, campaign_id: str, delivery: dict, fields: dict) -> None:
        """A sent delivery bounced: it moves to `fields["status"]` (failed), and what
        its send added (latency, node, worker, the billed email) is taken back, so the
        roll-up is what a recount of the deliveries gives (its send still counts for the
        first and last send times: it was sent)."""
        self.outcome(campaign_id, {**delivery, **fields}, delivery)
        created = delivery.get("created_at") or delivery["last_attempt_at"]
        self.sent(campaign_id, self._doc(campaign_id, day_of(created)), delivery, sign=-1)

    def docs(self) -> dict[str, dict]:
        """The documents these increments make when they start from nothing."""
        out: dict[str, dict] = {}
        for _id, inc in self.inc.items():
            doc: dict[str, Any] = dict(self.keys[_id])
            for key, value in inc.items():
                if value:
                    *path, leaf = key.split(".")  # funnel.<channel>.<stage>: two deep
                    inner = doc
                    for field in path:
                        inner = inner.setdefault(field, {})
                    inner[leaf] = int(value)
            doc.update(self.min.get(_id, {}))
            doc.update(self.max.get(_id, {}))
            out[_id] = doc
        return out

    def changes(self) -> list[tuple[str, dict[str, Any]]]:
        """(document id, its upsert's update) for every document these increments move."""
        out = []
        for _id, inc in self.inc.items():
            update: dict[str, Any] = {"$setOnInsert": self.keys[_id]}
            changes = {k: int(v) for k, v in inc.items() if v}
            if changes:
                update["$inc"] = changes
            if self.min.get(_id):
                update["$min"] = self.min[_id]
            if self.max.get(_id):
                update["$max"] = self.max[_id]
            if len(update) > 1:
                out.append((_id, update))
        return out

    def updates(self) -> list[UpdateOne]:
        return [UpdateOne({"_id": _id}, update, upsert=True)
                for _id, update in self.changes()]


def _retries(doc: dict) -> int:
    return max(0, int(doc.get("attempts") or 0) - 1)


async def write(db: AsyncDatabase, increments: Increments) -> None:
    """One bulk write for everything these outcomes changed (usually one document)."""
    updates = increments.updates()
    if updates:
        await db.rollups.bulk_write(updates, ordered=False)


def stage(writes: Writes, increments: Increments) -> None:
    """Queue what `write` writes on an `app.core.bulk.Writes`, to go with other writes."""
    for _id, update in increments.changes():
        writes.update("rollups", {"_id": _id}, update, upsert=True)


async def add_conversion(db: AsyncDatabase, created_at: datetime, source: str,
                         monthly_value: float) -> None:
    day = day_of(created_at)
    await db.rollups.update_one(
        {"_id": f"{CONVERSIONS}|{day}"},
        {"$setOnInsert": {"kind": CONVERSIONS, "day": day},
         "$inc": {f"n.{key_safe(source)}": 1, f"monthly.{key_safe(source)}": monthly_value}},
        upsert=True)


# Reading ----------------------------------------------------------------------------


def days(start: datetime, end: datetime) -> tuple[str, str]:
    """The days [first, last) a period [start, end) touches (a part day counts whole)."""
    last = end.astimezone(UTC)
    last_day = last.date() if last.time() == datetime.min.time() else last.date() + timedelta(1)
    return day_of(start), last_day.isoformat()


async def read(db: AsyncDatabase, kind: str, start: datetime, end: datetime,
               campaign_id: str | None = None) -> list[dict]:
    first, last = days(start, end)
    docs = await db.rollups.find({"kind": kind, "day": {"$gte": first, "$lt": last}}).to_list()
    return [d for d in docs if campaign_id is None or d.get("campaign_id") == campaign_id]


async def sessions_ever(db: AsyncDatabase) -> int:
    """Chat sessions created, from the daily chat roll-ups (one small document a day),
    instead of counting the sessions collection on every dashboard refresh."""
    days = await db.rollups.find({"kind": CHAT, "day": {"$gte": ""}},
                                 {"sessions": 1}).to_list()
    return sum(doc.get("sessions", 0) for doc in days)


async def campaign_funnel(db: AsyncDatabase, campaign_id: str) -> dict[str, dict[str, int]]:
    """The campaign's funnel per channel, from its roll-ups (a few documents: one a day;
    read by `_id` prefix, an index range)."""
    prefix = campaign_rollup_id(campaign_id, "")
    docs = await db.rollups.find({"_id": {"$gte": prefix, "$lt": prefix + "\uffff"}},
                                 {"funnel": 1}).to_list()
    return merged_funnel(docs)


def merged_funnel(docs: list[dict]) -> dict[str, dict[str, int]]:
    """Roll-ups' funnels added up: channel -> stage -> count (stages in FUNNEL order,
    those with nothing left out)."""
    total: dict[str, dict[str, int]] = {}
    for doc in docs:
        for channel, stages in (doc.get("funnel") or {}).items():
            row = total.setdefault(channel, {})
            for stage, n in stages.items():
                row[stage] = row.get(stage, 0) + int(n)
    return {channel: {stage: row[stage] for stage in FUNNEL if row.get(stage)}
            for channel, row in sorted(total.items()) if any(row.values())}
