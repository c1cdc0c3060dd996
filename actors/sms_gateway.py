"""The SMS gateway: one detached actor holding a transceiver bind to the SMSC, which
is where the SMSC sends what comes back, delivery receipts (and, later, customers'
own messages). Send tasks bind as transmitters and never see them.

Receipts are gathered as they arrive and applied in rounds (`app.sms_receipts`): at
most every ROUND_S, a handful of database commands per round. A receipt whose part is
not recorded yet waits for a later round. aiosmpplib answers each deliver_sm once our
hook has taken it, and reconnects by itself (with backoff) when the SMSC goes away.
Teardown: `ray.kill(ray.get_actor("sms-gateway", namespace="operator-comms"))`.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import ray
from aiosmpplib import ESME, AbstractHook, BindMode, DeliverSm

from actors import registry
from app import telemetry
from app.runtime import Runtime
from app.sms_receipts import Receipt, apply

log = logging.getLogger("operator_comms.sms")
ROUND_S = 0.25


class _Inbound(AbstractHook):
    def __init__(self, gateway: SmsGateway) -> None:
        self.gateway = gateway

    async def sending(self, smpp_message, pdu, client_id) -> None:
        pass

    async def received(self, smpp_message, pdu, client_id) -> None:
        if isinstance(smpp_message, DeliverSm):
            self.gateway.inbound(smpp_message)

    async def send_error(self, smpp_message, error, client_id) -> None:
        pass


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class SmsGateway:
    def __init__(self, runtime: Runtime):
        self.runtime = runtime
        settings = runtime.settings
        telemetry.setup(settings, "sms_gateway")
        self.waiting: list[Receipt] = []
        self.arrived = asyncio.Event()
        self.counts = {"receipts": 0, "delivered": 0, "undeliverable": 0, "unmatched": 0,
                       "mobile_originated": 0}
        endpoints = runtime.endpoints
        self.esme = ESME(smsc_host=endpoints.smpp_host, smsc_port=endpoints.smpp_port,
                         system_id=settings.smpp_system_id, password=settings.smpp_login(),
                         bind_mode=BindMode.TRANSCEIVER, hook=_Inbound(self),
                         log_level="ERROR", socket_timeout=settings.smpp_timeout_s)
        loop = asyncio.get_running_loop()
        self.session = loop.create_task(self.esme.start())
        self.rounds = loop.create_task(self._rounds())

    def inbound(self, message: DeliverSm) -> None:
        if message.is_receipt():
            receipt = message.parse_receipt()
            if receipt.get("id"):
                self.counts["receipts"] += 1
                self.waiting.append(Receipt(str(receipt["id"]), str(receipt.get("stat", "")),
                                            datetime.now(UTC)))
                self.arrived.set()
        else:  # a customer's own message: the chatbot by SMS is yet to come (#17 item 4)
            self.counts["mobile_originated"] += 1
            log.info("mobile-originated SMS from %s not handled", message.source.number)

    async def stats(self) -> dict:
        return {**self.counts, "waiting": len(self.waiting),
                "session": self.esme.session_state.name}

    async def _rounds(self) -> None:
        db = self.runtime.database()
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
            for key, n in counts.items():
                self.counts[key] = self.counts.get(key, 0) + n
            if later:  # parts not recorded yet: look again in a while
                self.waiting = later + self.waiting
                asyncio.get_running_loop().call_later(1.0, self.arrived.set)


def sms_gateway(runtime: Runtime):
    """The cluster's SMS gateway, created on first use (idempotent)."""
    return registry.get_or_create(SmsGateway, registry.SMS_GATEWAY, runtime,
                                  resources=runtime.settings.actor_resources)
