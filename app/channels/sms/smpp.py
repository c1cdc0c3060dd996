"""SMS: text into SMPP parts, and the SMPP transmitter session a send worker keeps.

Encoding is chosen by content: GSM-7 (160 characters in one message, 153 a part when
concatenated) when every character is in the GSM 03.38 alphabet, else UCS-2 (70, 67
a part); a longer text is split into parts that carry a concatenation UDH, so the
handset shows one message. aiosmpplib does the encoding and splitting.

A worker process keeps one SMPP session per SMSC and login, bound as a transmitter
(receipts and mobile-originated messages go to the SMS gateway actor's transceiver
session, `actors.sms_gateway`). Every send task of the process shares it: up to
`smpp_window` submit_sm await their answers at once (sequence numbers pair them), and
a send returns when every part of its message is answered. SMPP answers become the
same outcomes as SMTP's: accepted is sent (with the SMSC's message id per part),
throttling and transient errors are retried with backoff, the rest failed; a bind the
SMSC refuses fails the campaign like a bad SMTP login.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiosmpplib import (
    ESME,
    NPI,
    TON,
    AbstractHook,
    AbstractThrottleHandler,
    BindMode,
    DeliverSm,
    GenericNack,
    PhoneNumber,
    SmppCommandStatus,
    SubmitSm,
    SubmitSmResp,
)
from aiosmpplib.utils import detect_format, split_sms_udh

from app.core.config import FurtherSmsc, Settings
from app.core.endpoints import Endpoints
from app.core.statuses import AttemptOutcome

SENT, RETRY, FAILED, AUTH = AttemptOutcome
GSM7, UCS2 = "gsm0338", "ucs2"
UDHI = 0b01000000
log = logging.getLogger("operator_comms.sms")

# Worth another attempt later: the SMSC is busy or something passing went wrong.
TRANSIENT = {SmppCommandStatus.ESME_RTHROTTLED, SmppCommandStatus.ESME_RMSGQFUL,
             SmppCommandStatus.ESME_RSYSERR, SmppCommandStatus.ESME_RSUBMITFAIL,
             SmppCommandStatus.ESME_RX_T_APPN}
LOGIN = {SmppCommandStatus.ESME_RBINDFAIL, SmppCommandStatus.ESME_RINVPASWD,
         SmppCommandStatus.ESME_RINVSYSID}


@dataclass(frozen=True)
class Smsc:
    """Where and as whom to bind (a route's target; the password never printed)."""

    host: str
    port: int
    system_id: str
    password: str = field(default="", repr=False)


def main_smsc(settings: Settings, endpoints: Endpoints) -> Smsc:
    """The SMSC of `COMMS_SMPP_*` (or the embedded one the launcher started)."""
    return Smsc(endpoints.smpp_host, endpoints.smpp_port, settings.smpp_system_id,
                settings.smpp_login())


def further_smscs(settings: Settings) -> list[tuple[FurtherSmsc, Smsc]]:
    """The further SMSCs of `COMMS_SMPP_ROUTES`, with how to bind to each."""
    return [(route, Smsc(route.host, route.port, route.system_id,
                         route.password.get_secret_value() if route.password else ""))
            for route in settings.smpp_routes]


@dataclass(frozen=True)
class Sms:
    to: str  # E.164
    text: str
    reference: str  # the delivery id: names the parts' answers in logs and receipts

    @functools.cached_property
    def parts(self) -> tuple[str, list[bytes]]:
        """(encoding, encoded parts), split once: the send path counts them for the
        rate limit before the session submits them."""
        return split(self.text, self.reference)


@dataclass(frozen=True)
class SmsOutcome:
    status: str  # sent | retry | failed | auth
    code: int | None = None  # the SMPP command_status
    error: str | None = None
    smsc_ids: tuple[str, ...] = ()  # the SMSC's message id of each part, when sent


def split(text: str, reference: str = "") -> tuple[str, list[bytes]]:
    """(encoding, the encoded parts, each with its UDH when there are several)."""
    encoding = detect_format(text)
    # The concatenation reference: the same for every attempt of a delivery.
    ref = int.from_bytes(hashlib.blake2b(reference.encode(), digest_size=1).digest(), "big")
    return encoding, split_sms_udh(text, encoding, ref)


def describe(text: str) -> dict:
    """What a text costs as SMS: its encoding and parts (billed per part)."""
    encoding, parts = split(text)
    return {"encoding": "GSM-7" if encoding == GSM7 else "UCS-2", "segments": len(parts),
            "characters": len(text)}


def classify(status: SmppCommandStatus) -> str:
    if status == SmppCommandStatus.ESME_ROK:
        return SENT
    if status in LOGIN:
        return AUTH
    return RETRY if status in TRANSIENT else FAILED


class _Answers(AbstractHook):
    """aiosmpplib calls this with every PDU it reads: each submit's answer resolves the
    future its send waits on (by `log_id`); a refused bind is remembered."""

    def __init__(self, session: SmppSession) -> None:
        self.session = session

    async def sending(self, smpp_message, pdu, client_id) -> None:
        pass

    async def received(self, smpp_message, pdu, client_id) -> None:
        if isinstance(smpp_message, DeliverSm):  # a receipt or a customer's message
            if self.session.on_deliver is not None:
                stored = self.session.on_deliver(smpp_message)
                if stored is not None:  # stored before the SMSC gets its answer
                    await stored
        elif isinstance(smpp_message, SubmitSmResp | GenericNack) and smpp_message.log_id:
            self.session.answered(smpp_message.log_id, smpp_message.command_status,
                                  getattr(smpp_message, "message_id", ""))
        elif smpp_message is not None and type(smpp_message).__name__.startswith("Bind"):
            self.session.bound(smpp_message.command_status)

    async def send_error(self, smpp_message, error, client_id) -> None:
        if getattr(smpp_message, "log_id", ""):
            self.session.failed(smpp_message.log_id, error)


class Backoff(AbstractThrottleHandler):
    """After an ESME_RTHROTTLED (or queue-full) answer, new submits wait: 0.1 s,
    doubling for each throttled answer in a row up to MAX_S; an accepted submit resets
    it. (aiosmpplib's own handler stops sending for its whole 180 s sampling period
    once more than 1% of 50 answers were throttled.) The throttled message itself is
    retried by the send path's backoff."""

    MAX_S = 5.0

    def __init__(self) -> None:
        self.delay, self.until = 0.0, 0.0

    async def throttled(self) -> None:
        self.delay = min(self.MAX_S, max(0.1, self.delay * 2))
        self.until = time.monotonic() + self.delay

    async def not_throttled(self) -> None:
        self.delay = 0.0

    async def allow_request(self) -> bool:
        return time.monotonic() >= self.until

    async def throttle_delay(self) -> float:
        return max(0.01, self.until - time.monotonic())


class SmppSession:
    """One bind to the SMSC: a send worker's transmitter, shared by the sends of its
    process, or the gateway's transceiver, whose `on_deliver` hears what the SMSC sends
    (receipts, customers' messages; aiosmpplib answers each after the call, and after
    the awaitable it returns, if any)."""

    def __init__(self, settings: Settings, smsc: Smsc,
                 bind_mode: BindMode = BindMode.TRANSMITTER,
                 on_deliver: Callable[[DeliverSm], Awaitable[None] | None] | None = None):
        self.settings = settings
        self.on_deliver = on_deliver
        self.window = asyncio.Semaphore(settings.smpp_window)
        self.waiting: dict[str, asyncio.Future] = {}
        self.refused: SmppCommandStatus | None = None
        self.sequence = 0
        self.esme = ESME(
            smsc_host=smsc.host, smsc_port=smsc.port,
            system_id=smsc.system_id, password=smsc.password,
            bind_mode=bind_mode, hook=_Answers(self), log_level="ERROR",
            throttle_handler=Backoff(),
            socket_timeout=settings.smpp_timeout_s,
            enquire_link_interval=min(55.0, settings.smpp_timeout_s))
        self.task = asyncio.get_running_loop().create_task(self.esme.start())

    def bound(self, status: SmppCommandStatus) -> None:
        self.refused = None if status == SmppCommandStatus.ESME_ROK else status
        if self.refused is not None:  # nothing will be answered on this session
            for future in list(self.waiting.values()):
                if not future.done():
                    future.set_result((status, ""))

    def answered(self, log_id: str, status: SmppCommandStatus, message_id: str) -> None:
        future = self.waiting.get(log_id)
        if future is not None and not future.done():
            future.set_result((status, message_id))

    def failed(self, log_id: str, error: BaseException) -> None:
        future = self.waiting.get(log_id)
        if future is not None and not future.done():
            future.set_result((None, f"{type(error).__name__}: {error}"))

    async def send(self, sms: Sms) -> SmsOutcome:
        if self.refused is not None:
            return SmsOutcome(AUTH, int(self.refused), f"SMSC refused the bind: "
                                                       f"{self.refused.name}")
        encoding, parts = sms.parts
        answers = await asyncio.gather(*(self._submit(sms, encoding, part, len(parts))
                                         for part in parts))
        ids = []
        for status, detail in answers:
            if status is None:  # not transmitted, or no answer in time
                return SmsOutcome(RETRY, None, detail[:300])
            outcome = classify(status)
            if outcome != SENT:
                return SmsOutcome(outcome, int(status), status.name)
            ids.append(detail)
        return SmsOutcome(SENT, 0, None, tuple(ids))

    async def _submit(self, sms: Sms, encoding: str, part: bytes, total: int
                      ) -> tuple[SmppCommandStatus | None, str]:
        self.sequence += 1
        log_id = f"{sms.reference}#{self.sequence}"
        message = SubmitSm(
            short_message=" ", source=_source(self.settings.smpp_source),
            destination=PhoneNumber(sms.to.lstrip("+"), TON.INTERNATIONAL, NPI.ISDN),
            esm_class=UDHI if total > 1 else 0, registered_delivery=1,
            encoding=None if encoding == GSM7 else encoding, log_id=log_id)
        message.set_encoded_message(part[1:] if total == 1 else part)
        future = asyncio.get_running_loop().create_future()
        async with self.window:
            self.waiting[log_id] = future
            try:
                await self.esme.broker.enqueue(message)
                return await asyncio.wait_for(future, self.settings.smpp_timeout_s)
            except TimeoutError:
                return None, f"no answer from the SMSC in {self.settings.smpp_timeout_s:g} s"
            finally:
                self.waiting.pop(log_id, None)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.esme.stop(), 5)
        self.task.cancel()


def _source(address: str) -> PhoneNumber:
    if address.isdigit():
        return PhoneNumber(address, TON.NATIONAL if len(address) > 6 else TON.UNKNOWN,
                           NPI.ISDN)
    return PhoneNumber(address, TON.ALPHANUMERIC, NPI.UNKNOWN)


class SmppSender:
    """What a send task's connection loop holds: the process's shared session."""

    def __init__(self, session: SmppSession):
        self.session = session

    async def send(self, sms: Sms) -> SmsOutcome:
        return await self.session.send(sms)


_sessions: dict[tuple[int, Smsc], SmppSession] = {}


def smpp_sender(settings: Settings, smsc: Smsc) -> SmppSender:
    """A handle on this process's session to the SMSC (made on first use)."""
    key = (id(asyncio.get_running_loop()), smsc)
    session = _sessions.get(key)
    if session is None or session.task.done():
        session = _sessions[key] = SmppSession(settings, smsc)
    return SmppSender(session)
