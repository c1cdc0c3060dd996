"""The SMS gateway: one detached actor holding a transceiver bind to each SMSC, which
is where the SMSC sends what comes back: delivery receipts and customers' own
messages. Send tasks bind as transmitters and never see them.

A customer's message is stored before the SMSC gets its answer (`app.channels.sms.inbox`), then
taken as a chat turn (`app.chat.sms_chat`, one at a time, in arrival order; a restarted
gateway first takes those stored and not answered), answered by SMS over the same
bind; the marketing actor sends its counter-offers to SMS conversations through
`send_texts` too.

Receipts are gathered as they arrive and applied in rounds (`app.channels.sms.receipts`): at
most every ROUND_S, a handful of database commands per round. A receipt whose part is
not recorded yet waits for a later round. aiosmpplib answers each deliver_sm once our
hook has taken it, and reconnects by itself (with backoff) when the SMSC goes away.
Teardown: `ray.kill(ray.get_actor("sms-gateway", namespace="operator-comms"))`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime

import ray
from aiosmpplib import BindMode, DeliverSm

from actors import registry
from actors.chat_events import chat_consumers
from actors.metrics import FunnelMetrics
from app.audience.phones import e164
from app.channels.sms import inbox as sms_inbox
from app.channels.sms.receipts import Receipt, apply, stored_waiting
from app.channels.sms.smpp import SENT, SmppSession, Sms, further_smscs, main_smsc
from app.chat import sms_chat
from app.chat.flow_engine import load_flow
from app.core.runtime import Runtime
from app.observability import telemetry

log = logging.getLogger("operator_comms.sms")
ROUND_S = 0.25


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=100)
class SmsGateway(registry.MadeWithRuntime):
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        settings = runtime.settings
        telemetry.setup(settings, "sms_gateway")
        self.waiting: list[Receipt] = []
        self.arrived = asyncio.Event()
        self.mobile: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self.counts = {"receipts": 0, "delivered": 0, "undeliverable": 0, "unmatched": 0,
                       "mobile_originated": 0, "replies": 0}
        self.flow = load_flow()
        self.keywords = sms_chat.Keywords.of(settings)
        self.consumers = chat_consumers(runtime)
        self.session = SmppSession(settings, main_smsc(settings, runtime.endpoints),
                                   BindMode.TRANSCEIVER, on_deliver=self.inbound)
        # Receipts come back over a bind to the SMSC that took the message: one to each
        # further SMSC too (the chat's own texts go over the main one).
        self.further = [SmppSession(settings, smsc, BindMode.TRANSCEIVER,
                                    on_deliver=self.inbound)
                        for _, smsc in further_smscs(settings)]
        loop = asyncio.get_running_loop()
        self.rounds = loop.create_task(self._rounds())
        self.chats = loop.create_task(self._chats())

    def inbound(self, message: DeliverSm) -> Awaitable[None] | None:
        """What the SMSC delivers: a receipt is gathered for the next round; a customer's
        message is stored first (the awaitable: the SMSC is answered after it)."""
        if message.is_receipt():
            receipt = message.parse_receipt()
            if receipt.get("id"):
                self.counts["receipts"] += 1
                self.waiting.append(Receipt(str(receipt["id"]), str(receipt.get("stat", "")),
                                            datetime.now(UTC)))
                self.arrived.set()
            return None
        self.counts["mobile_originated"] += 1
        try:
            number = e164("+" + message.source.number.lstrip("+"))
        except ValueError:
            log.warning("an SMS from %r, not a phone number: ignored", message.source.number)
            return None
        return self._store(number, message.short_message or message.message_payload)

    async def _store(self, number: str, text: str) -> None:
        inbox_id = await sms_inbox.store(self.runtime.database(), number, text)
        self.mobile.put_nowait((inbox_id, number, text))

    async def send_texts(self, texts: list[tuple[str, str, str]]) -> dict[str, bool]:
        """(number, text, reference) each: sent over this gateway's session (the chat's
        answers, counter-offers); reference -> accepted by the SMSC."""
        outcomes = await asyncio.gather(*(self.session.send(Sms(number, text, reference))
                                          for number, text, reference in texts))
        for (_, _, reference), outcome in zip(texts, outcomes, strict=True):
            if outcome.status != SENT:
                log.warning("SMS %s not sent: %s %s", reference, outcome.code, outcome.error)
        return {reference: outcome.status == SENT
                for (_, _, reference), outcome in zip(texts, outcomes, strict=True)}

    async def stats(self) -> dict:
        return {**self.counts, "waiting": len(self.waiting),
                "session": self.session.esme.session_state.name}

    async def _chats(self) -> None:
        """Customers' messages, one at a time (a number's turns stay in order): first
        those a stopped gateway stored but did not answer, then what arrives."""
        db = self.runtime.database()
        recovered = await sms_inbox.waiting(db)
        if recovered:
            log.warning("%d customer SMS stored before a restart: their turns now",
                        len(recovered))
        backlog = [(m["_id"], m["number"], m["text"]) for m in recovered]
        recovered_ids = {m["_id"] for m in recovered}
        while True:
            if backlog:
                inbox_id, number, text = backlog.pop(0)
            else:
                inbox_id, number, text = await self.mobile.get()
                if inbox_id in recovered_ids:  # stored as the backlog was read: taken
                    continue
            try:
                reference, answer = await sms_chat.inbound(db, self.flow, number, text,
                                                           self.consumers, self.keywords)
                if answer:
                    await self.send_texts([(number, answer, reference)])
                    self.counts["replies"] += 1
                await sms_inbox.taken(db, inbox_id)
            except Exception:  # stays stored: the next start takes it again
                log.exception("an SMS from %s: the chat turn failed", number)

    async def _rounds(self) -> None:
        db = self.runtime.database()
        self.waiting = await stored_waiting(db) + self.waiting  # a stopped gateway's
        if self.waiting:
            self.arrived.set()
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            await asyncio.sleep(ROUND_S)  # let a round gather
            receipts, self.waiting = self.waiting, []
            try:
                counts, later = await apply(db, receipts)
            except Exception:
                log.exception("SMS receipts: a round failed; its %d receipts wait",
                              len(receipts))
                later, counts = receipts, {}
                await asyncio.sleep(1.0)
            FunnelMetrics.get().count("sms", counts)
            for key, n in counts.items():
                self.counts[key] = self.counts.get(key, 0) + n
            if later:  # parts not recorded yet: look again in a while
                self.waiting = later + self.waiting
                asyncio.get_running_loop().call_later(1.0, self.arrived.set)


def sms_gateway(runtime: Runtime, replace_older: bool = False):
    """The cluster's SMS gateway, created on first use (idempotent); with
    `replace_older`, replaced if it runs with another runtime (the launcher)."""
    return registry.get_or_create(
        SmsGateway, registry.SMS_GATEWAY, runtime, resources=runtime.settings.actor_resources,
        fingerprint=runtime.fingerprint() if replace_older else None)
