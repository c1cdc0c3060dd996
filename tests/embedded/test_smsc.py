"""The embedded SMSC against a real SMPP client (aiosmpplib's ESME): binds, submits,
refusals by number, multi-part messages, receipts and mobile-originated messages."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiosmpplib import (
    ESME,
    AbstractHook,
    BindMode,
    DeliverSm,
    PhoneNumber,
    SmppCommandStatus,
    SmppError,
    SubmitSm,
    SubmitSmResp,
)

from embedded.smsc import Smsc


class Collect(AbstractHook):
    def __init__(self) -> None:
        self.got: list = []

    async def sending(self, smpp_message, pdu, client_id) -> None:
        pass

    async def received(self, smpp_message, pdu, client_id) -> None:
        if smpp_message is not None:
            self.got.append(smpp_message)

    async def send_error(self, smpp_message, error, client_id) -> None:
        self.got.append(error)

    def of(self, kind: type) -> list:
        return [m for m in self.got if isinstance(m, kind)]


@pytest.fixture
def smsc():
    server = Smsc(receipt_delay_s=0.05)
    server.start()
    yield server
    server.stop()


async def until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def submit(number: str, text: str, log_id: str, **fields) -> SubmitSm:
    return SubmitSm(short_message=text, source=PhoneNumber("4321"),
                    destination=PhoneNumber(number), log_id=log_id, **fields)


async def test_submits_are_answered_by_number_and_receipted(smsc: Smsc) -> None:
    hook = Collect()
    esme = ESME(smsc_host=smsc.host, smsc_port=smsc.port, system_id="comms",
                password="local", hook=hook, log_level="ERROR")
    running = asyncio.create_task(esme.start())
    try:
        for log_id, number in (("ok", "5511987650000"), ("reject", "5511987650001"),
                               ("throttle", "5511987650002"), ("undeliv", "5511987650003")):
            await esme.broker.enqueue(submit(number, "Olá, plano Turbo €", log_id))
        long = "Sua fatura: " + "detalhe " * 40  # GSM-7, 332 characters: three parts
        await esme.broker.enqueue(submit("5511987659998", long, "long",
                                         esm_class=0b01000000, auto_message_payload=False))
        await esme.broker.enqueue(submit("5511987650002", "again", "throttle-again"))
        await until(lambda: len(hook.of(SubmitSmResp)) == 6)
        statuses = {m.log_id: m.command_status for m in hook.of(SubmitSmResp)}
        assert statuses == {
            "ok": SmppCommandStatus.ESME_ROK, "reject": SmppCommandStatus.ESME_RINVDSTADR,
            "throttle": SmppCommandStatus.ESME_RTHROTTLED, "undeliv": SmppCommandStatus.ESME_ROK,
            "long": SmppCommandStatus.ESME_ROK, "throttle-again": SmppCommandStatus.ESME_ROK}

        counts = smsc.count_by_number()
        assert counts == {"5511987650000": 1, "5511987650003": 1, "5511987659998": 1,
                          "5511987650002": 1}
        [long_in] = smsc.messages("5511987659998")["messages"]
        assert long_in["parts"] == 3 and long_in["text"] == long

        # A receipt per part (the ESME's correlator folds a message's parts into one).
        await until(lambda: len(hook.of(DeliverSm)) == 4)
        receipts = {m.log_id: m.parse_receipt()["stat"] for m in hook.of(DeliverSm)}
        assert receipts == {"ok": "DELIVRD", "undeliv": "UNDELIV", "long": "DELIVRD",
                            "throttle-again": "DELIVRD"}
        stats = smsc.stats()
        assert (stats["rejected"], stats["throttled"], stats["receipts"]) == (1, 1, 6)

        smsc.inject_mo("5511987650000", "4321", "1")
        await until(lambda: len(hook.of(DeliverSm)) == 5)
        mo = hook.of(DeliverSm)[-1]
        assert not mo.is_receipt() and mo.short_message == "1"
        assert mo.source.number == "5511987650000"
    finally:
        await esme.stop()
        running.cancel()


async def test_a_wrong_password_is_refused_and_receipts_wait_for_a_receiver(smsc: Smsc) -> None:
    wrong = ESME(smsc_host=smsc.host, smsc_port=smsc.port, system_id="comms",
                 password="nope", log_level="CRITICAL")
    with pytest.raises(SmppError) as refused:
        await wrong.connect()
    assert refused.value.command_status == SmppCommandStatus.ESME_RBINDFAIL

    hook = Collect()
    sender = ESME(smsc_host=smsc.host, smsc_port=smsc.port, system_id="comms",
                  password="local", bind_mode=BindMode.TRANSMITTER, hook=hook,
                  log_level="ERROR")
    sending = asyncio.create_task(sender.start())
    receiver_hook = Collect()
    receiver = ESME(smsc_host=smsc.host, smsc_port=smsc.port, system_id="comms",
                    password="local", bind_mode=BindMode.RECEIVER, hook=receiver_hook,
                    log_level="ERROR")
    receiving = None
    try:
        await sender.broker.enqueue(submit("5511987651111", "hi", "tx"))
        await until(lambda: len(hook.of(SubmitSmResp)) == 1)
        await asyncio.sleep(0.2)  # the receipt is due, but nobody can receive it yet
        assert not hook.of(DeliverSm)
        receiving = asyncio.create_task(receiver.start())
        await until(lambda: len(receiver_hook.of(DeliverSm)) == 1)
        [receipt] = receiver_hook.of(DeliverSm)
        assert receipt.is_receipt() and receipt.parse_receipt()["id"] == (
            hook.of(SubmitSmResp)[0].message_id)
    finally:
        await sender.stop()
        sending.cancel()
        if receiving is not None:
            await receiver.stop()
            receiving.cancel()
