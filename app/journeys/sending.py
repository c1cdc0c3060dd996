"""A journey step's sends and attribute changes, made from enrollments' outboxes.

A send goes through its channel's `Channel` (compose, routes, senders) as a campaign's
does; its key (`j|<enrollment>|<version>|<step>|<move>`) is its delivery id, so its
Message-ID and tracked links are its own, and one already recorded in
`journey_sends` is not sent again. Whoever unsubscribed, or opted out of the channel,
is skipped (read at send time). With the operator's frequency cap
(`app.audience.caps`), a customer at it is skipped and each send counts toward it.
A transient failure stays in the outbox for the next round; anything else is
recorded and taken out.

An offer step's sends (`OFFER`) are made by the `OfferMaker` the shard is given (the
marketing side's: the offer stored, then fired into the chat and its channels); the
frequency cap does not count them (an answer to the customer's own conversation).

A tracked open or click of a journey email (`record_hit`) becomes a
`delivery.opened` / `delivery.clicked` event for the enrollment that sent it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.asynchronous.database import AsyncDatabase

from app.audience.caps import note_sent, operator_cap, recent_sends
from app.audience.customers import SEND_FIELDS
from app.channels.base import SendOutcome
from app.channels.registry import CHANNELS
from app.channels.routing import close_routed, routed_senders, send_moving
from app.channels.templates import CompiledTemplates, TemplateProblem, compile_templates
from app.core.runtime import Runtime
from app.journeys.definition import OFFER, Journey, Send
from app.journeys.enrollments import by_ids, insert_new

log = logging.getLogger("operator_comms.journeys")
CONNECTIONS = 4  # per channel, per round
SENT, RETRY = "sent", "retry"
PREFIX = "j|"


# Offer sends, (enrollment, outbox item) each, made: an outcome each, in order.
OfferMaker = Callable[[AsyncDatabase, list[tuple[dict[str, Any], dict[str, Any]]]],
                      Awaitable[list[SendOutcome]]]


def is_journey_send(delivery_id: str) -> bool:
    return delivery_id.startswith(PREFIX)


class Sender:
    """Makes outbox items for one shard; compiled templates are kept per step."""

    def __init__(self, runtime: Runtime, offers: OfferMaker | None = None):
        self.runtime = runtime
        self.offers = offers
        self.templates: dict[tuple[str, str], CompiledTemplates] = {}

    def _templates(self, version_id: str, step: Send) -> CompiledTemplates:
        key = (version_id, step.id)
        if key not in self.templates:
            self.templates[key] = compile_templates(step.subject, step.text, step.html)
        return self.templates[key]

    async def make(self, db: AsyncDatabase, enrollments: list[dict[str, Any]],
                   journeys: dict[str, Journey]) -> dict[str, list[str]]:
        """Make the outbox items of these enrollments; enrollment id -> the keys of
        the items done (made, or settled for good)."""
        items = [(e, item) for e in enrollments for item in e.get("outbox") or ()]
        if not items:
            return {}
        done: dict[str, list[str]] = {}
        sets = [(e, item) for e, item in items if item["kind"] == "set"]
        if sets:
            await db.customers.bulk_write([UpdateOne(
                {"_id": e["customer_id"]}, {"$set": {item["attribute"]: item["value"]}})
                for e, item in sets], ordered=False)
            for e, item in sets:
                done.setdefault(e["_id"], []).append(item["key"])
        sends = [(e, item) for e, item in items if item["kind"] == "send"]
        if sends:
            recorded = {doc["_id"] for doc in await by_ids(
                db.journey_sends, "_id", [item["key"] for _, item in sends], {"_id": 1})}
            customers = {doc["_id"]: doc for doc in await by_ids(
                db.customers, "_id", [e["customer_id"] for e, _ in sends],
                {**SEND_FIELDS, "vars": 1})}
            to_send = []
            for e, item in sends:
                if item["key"] in recorded:
                    done.setdefault(e["_id"], []).append(item["key"])
                else:
                    to_send.append((e, item))
            offered = [(e, item) for e, item in to_send if item["channel"] == OFFER]
            to_send = [(e, item) for e, item in to_send if item["channel"] != OFFER]
            cap = operator_cap(self.runtime.settings)
            at = datetime.now(UTC)
            capped = set()
            if cap is not None and to_send:  # (one read, only with a cap)
                recent = await recent_sends(db, list({e["customer_id"] for e, _ in to_send}))
                capped = {cid for cid, sends in recent.items() if cap.reached(sends, at)}
            outcomes = await self._send(to_send, customers, journeys, capped,
                                        cap.reason if cap else "")
            if cap is not None:
                await note_sent(db, [e["customer_id"] for (e, _), outcome
                                     in zip(to_send, outcomes, strict=True)
                                     if outcome.status == SENT], at)
            if offered:
                outcomes += await self._offer(db, offered)
                to_send += offered
            records = []
            for (e, item), outcome in zip(to_send, outcomes, strict=True):
                if outcome.status == RETRY:
                    log.warning("journey send %s: %s; tried again next round", item["key"],
                                outcome.error)
                    continue
                done.setdefault(e["_id"], []).append(item["key"])
                records.append({"_id": item["key"], "enrollment_id": e["_id"],
                                "customer_id": e["customer_id"], "key": e["key"],
                                "version": e["version"], "step": item["step"],
                                "channel": item["channel"], "status": outcome.status,
                                "error": outcome.error, "at": datetime.now(UTC)})
            await insert_new(db, "journey_sends", records)  # (one recorded before: the same)
        return done

    async def _offer(self, db: AsyncDatabase, offered: list[tuple[dict, dict]]
                     ) -> list[SendOutcome]:
        if self.offers is None:  # (a shard is always given one; a bare walker is not)
            return [SendOutcome(RETRY, None, "no offer maker here")] * len(offered)
        return await self.offers(db, offered)

    async def _send(self, sends: list[tuple[dict, dict]], customers: dict[str, dict],
                    journeys: dict[str, Journey], capped: AbstractSet[str] = frozenset(),
                    cap_reason: str = "") -> list[SendOutcome]:
        outcomes: list[SendOutcome | None] = [None] * len(sends)
        by_channel: dict[str, list[int]] = {}
        composed: dict[int, Any] = {}
        for n, (enrollment, item) in enumerate(sends):
            customer = customers.get(enrollment["customer_id"])
            channel = CHANNELS[item["channel"]]
            step = journeys[enrollment["version_id"]].step(item["step"])
            if customer is None or customer.get("unsubscribed") is True:
                outcomes[n] = SendOutcome("skipped", None, "unsubscribed or removed")
                continue
            if (why := channel.unreachable(customer)) is not None:
                outcomes[n] = SendOutcome("skipped", None, why)
                continue
            if enrollment["customer_id"] in capped:  # the operator's frequency cap
                outcomes[n] = SendOutcome("skipped", None, cap_reason)
                continue
            assert isinstance(step, Send)
            try:
                composed[n] = channel.compose(
                    self._templates(enrollment["version_id"], step), customer,
                    runtime=self.runtime, delivery_id=item["key"],
                    tracking={"opens": step.track, "clicks": step.track})
            except TemplateProblem as exc:
                outcomes[n] = SendOutcome("failed", None, str(exc)[:300])
                continue
            by_channel.setdefault(item["channel"], []).append(n)
        for name, indexes in by_channel.items():
            channel = CHANNELS[name]
            queue = list(indexes)
            senders = routed_senders(channel, self.runtime.settings, self.runtime.endpoints,
                                     min(CONNECTIONS, len(queue)))

            async def drain(sender: Any, queue: list[int]) -> None:
                while queue:
                    n = queue.pop()
                    outcomes[n] = await send_moving(sender, composed[n].message)

            try:
                await asyncio.gather(*(drain(sender, queue) for sender in senders))
            finally:
                close_routed(channel, senders)
        return [o if o is not None else SendOutcome(RETRY, None, "not sent")
                for o in outcomes]


async def record_hit(db: AsyncDatabase, kind: str, send_key: str, at: datetime
                     ) -> dict[str, Any] | None:
    """An offer step's sends (`OFFER`) are made by the `OfferMaker` the shard is given (the
marketing side's: the offer stored, then fired into the chat and its channels); the
frequency cap does not count them (an answer to the customer's own conversation).

A tracked open or click (`kind`: opened, clicked) of a journey send: counted on
    the send's record, and the `delivery.<kind>` event of the enrollment that sent it
    (returned; its id is the send's and the kind's, so a second hit stores nothing
    new, and a hit before the send's record is written is not lost). None for a key
    that is not a journey send's."""
    enrollment_id, customer_id = sender_of(send_key)
    if enrollment_id is None:
        return None
    first = await db.journey_sends.find_one_and_update(
        {"_id": send_key, f"{kind}.first": {"$exists": False}},
        {"$set": {f"{kind}.first": at, f"{kind}.last": at}, "$inc": {f"{kind}.count": 1}},
        projection={"_id": 1})
    if first is None:
        await db.journey_sends.update_one({"_id": send_key}, {
            "$set": {f"{kind}.last": at}, "$inc": {f"{kind}.count": 1}})
    return {"_id": f"{kind}:{send_key}", "type": f"delivery.{kind}",
            "customer_id": customer_id, "enrollment_id": enrollment_id, "at": at}


def sender_of(send_key: str) -> tuple[str | None, str | None]:
    """(enrollment id, customer id) of a send key `j|<enrollment>|<version>|<step>|<move>`,
    the enrollment being `<journey>|<customer>[|<entry event>]`."""
    parts = send_key.split("|")
    if len(parts) < 6 or parts[0] != PREFIX.rstrip("|"):
        return None, None
    return "|".join(parts[1:-3]), parts[2]
