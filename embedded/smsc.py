"""An embedded SMSC for local mode and tests: a real SMPP 3.4 server on 127.0.0.1.

It speaks the protocol with aiosmpplib's PDU classes (the same codec the app's ESME
uses, from the other side): binds as transmitter, receiver or transceiver (system id
and password checked), `submit_sm` answered with a message id, `enquire_link`,
`unbind`, `generic_nack` for what it does not know. Every part it accepts is kept in
an outbox; a multi-part message (UDH or SAR) counts as one message to its number once
all its parts are in. A part that asked for a receipt gets a `deliver_sm` receipt
after `receipt_delay_s`, sent to a receiver or transceiver session of the same system
id (held until one is bound). `inject_mo` sends a mobile-originated message the same
way.

Like the SMTP sink's `+reject` / `+tempfail`, the destination number decides:
- ending in `0001`: `submit_sm` refused with ESME_RINVDSTADR (a permanent error);
- ending in `0002`: refused with ESME_RTHROTTLED the first time, accepted after;
- ending in `0003`: accepted, and its receipt says UNDELIV;
- ending in `9999`: the first submit is held unanswered (up to 30 s) and dropped if
  its session goes away meanwhile (how tests kill a sender at a known point);
- anything else: accepted and DELIVRD.
`throttle_per_s` (0: off) refuses with ESME_RTHROTTLED whatever exceeds that rate.

Runs its own event loop in a thread (`start`, `stop`), like aiosmtpd's controller, so
the local-services actor and tests can host it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from aiosmpplib import (
    BindReceiver,
    BindReceiverResp,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    DeliverSm,
    EnquireLinkResp,
    GenericNack,
    PhoneNumber,
    SmppCommand,
    SmppCommandStatus,
    SubmitSm,
    SubmitSmResp,
    UnbindResp,
)
from aiosmpplib.protocol import MESSAGE_TYPE_MAP, PDU_HEADER_LENGTH, SmppMessage

# What a number's ending means here lives with the phones (demo customers avoid them).
from app.audience.phones import HELD, REFUSED, THROTTLED_ONCE, UNDELIVERABLE
from embedded.processes import free_port

HOLD_S = 30.0
MAX_PDU = 70_000
RESPONSES = {BindTransmitter: BindTransmitterResp, BindReceiver: BindReceiverResp,
             BindTransceiver: BindTransceiverResp}


@dataclass
class Received:
    """One message as its number received it (all its parts)."""

    number: str
    source: str
    text: str
    parts: int
    message_ids: list[str]
    at: float


@dataclass
class _Session:
    writer: asyncio.StreamWriter
    system_id: str = ""
    receives: bool = False  # bound as receiver or transceiver
    sequence: itertools.count = field(default_factory=lambda: itertools.count(1))


class Smsc:
    def __init__(self, system_id: str = "comms", password: str = "local",
                 receipt_delay_s: float = 0.5, throttle_per_s: float = 0.0,
                 host: str = "127.0.0.1", port: int | None = None,
                 submit_delay_s: float = 0.0):
        self.system_id, self.password = system_id, password
        self.receipt_delay_s, self.throttle_per_s = receipt_delay_s, throttle_per_s
        self.submit_delay_s = submit_delay_s  # each answer's latency (answers overlap)
        self.host, self.port = host, port or free_port()
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.parts: dict[tuple, dict[int, tuple[str, str]]] = {}  # (number, ref) -> parts
        self.counts = {"submitted": 0, "rejected": 0, "throttled": 0, "receipts": 0,
                       "mo": 0}
        self.throttled_once: set[str] = set()
        self.held_once: set[str] = set()
        self.holding: set[str] = set()  # numbers whose submit is held right now
        self.window: deque[float] = deque()  # accept times within the last second
        self.sessions: list[_Session] = []
        self.held: deque[DeliverSm] = deque()  # for a receiving session to be bound
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.base_events.Server | None = None
        self.thread: threading.Thread | None = None

    # Running ------------------------------------------------------------------------

    def start(self) -> tuple[str, int]:
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._serve, self.host, self.port, limit=MAX_PDU))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="smsc", daemon=True)
        self.thread.start()
        ready.wait(10)
        return self.host, self.port

    def stop(self) -> None:
        if self.loop is None:
            return

        async def close() -> None:
            self.server.close()
            for session in list(self.sessions):
                session.writer.close()
        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    # Queries (any thread) -----------------------------------------------------------

    def messages(self, number: str | None = None, limit: int = 100) -> dict:
        with self.lock:
            found = [m for m in self.received if number is None or number in m.number]
        return {"total": len(self.received), "matched": len(found),
                "messages": [vars(m) for m in reversed(found[-limit:])]}

    def count_by_number(self, contains: str | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        with self.lock:
            for message in self.received:
                if contains is None or contains in message.number:
                    out[message.number] = out.get(message.number, 0) + 1
        return out

    def arrivals(self, since: float = 0.0) -> list[float]:
        """When each message received since `since` was complete (epoch seconds)."""
        with self.lock:
            return [m.at for m in self.received if m.at >= since]

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {**self.counts, "messages": len(self.received),
                    "bound": len(self.sessions)}

    def inject_mo(self, source: str, destination: str, text: str) -> None:
        """A mobile-originated message from `source` to the service number."""
        def queue() -> None:
            self.counts["mo"] += 1
            self._deliver(DeliverSm(short_message=text, source=PhoneNumber(source),
                                    destination=PhoneNumber(destination),
                                    registered_delivery=0))
        self.loop.call_soon_threadsafe(queue)

    # Protocol -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                     ) -> None:
        session = _Session(writer)
        try:
            while True:
                head = await reader.readexactly(4)
                length = int.from_bytes(head, "big")
                if not PDU_HEADER_LENGTH <= length <= MAX_PDU:
                    return
                pdu = head + await reader.readexactly(length - 4)
                if not await self._handle(session, pdu):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            if session in self.sessions:
                self.sessions.remove(session)
            writer.close()

    async def _handle(self, session: _Session, pdu: bytes) -> bool:
        try:
            header = SmppMessage.parse_header(pdu)
            message = MESSAGE_TYPE_MAP[header.smpp_command].from_pdu(pdu, header, "gsm0338")
        except (ValueError, KeyError):
            sequence = int.from_bytes(pdu[12:16], "big") if len(pdu) >= 16 else 0
            await self._send(session, GenericNack(sequence, SmppCommandStatus.ESME_RINVCMDID))
            return True
        command = header.smpp_command
        if isinstance(message, BindTransmitter | BindReceiver | BindTransceiver):
            ok = (message.system_id, message.password) == (self.system_id, self.password)
            response = RESPONSES[type(message)](
                header.sequence_num, SmppCommandStatus.ESME_ROK if ok
                else SmppCommandStatus.ESME_RBINDFAIL, system_id="embedded")
            await self._send(session, response)
            if not ok:
                return False
            session.system_id = message.system_id
            session.receives = not isinstance(message, BindTransmitter)
            self.sessions.append(session)
            if session.receives:
                while self.held:
                    await self._send(session, self.held.popleft(), new_sequence=True)
            return True
        if not session.system_id:  # nothing but a bind before binding
            await self._send(session, GenericNack(header.sequence_num,
                                                  SmppCommandStatus.ESME_RINVBNDSTS))
            return True
        if command == SmppCommand.SUBMIT_SM:
            await self._submit(session, message)
        elif command == SmppCommand.ENQUIRE_LINK:
            await self._send(session, EnquireLinkResp(header.sequence_num))
        elif command == SmppCommand.UNBIND:
            await self._send(session, UnbindResp(header.sequence_num))
            return False
        elif command in (SmppCommand.DELIVER_SM_RESP, SmppCommand.GENERIC_NACK):
            pass  # the ESME took a receipt or MO (or refused it; nothing to redo here)
        else:
            await self._send(session, GenericNack(header.sequence_num,
                                                  SmppCommandStatus.ESME_RINVCMDID))
        return True

    async def _submit(self, session: _Session, message: SubmitSm) -> None:
        number = message.destination.number
        if number.endswith(HELD) and number not in self.held_once:
            self.held_once.add(number)
            asyncio.get_running_loop().create_task(self._hold(session, message))
            return
        if self.submit_delay_s > 0:  # like a relay's latency: answered later, in parallel
            asyncio.get_running_loop().create_task(self._later(session, message))
            return
        await self._answer(session, message)

    async def _later(self, session: _Session, message: SubmitSm) -> None:
        await asyncio.sleep(self.submit_delay_s)
        if session in self.sessions:
            await self._answer(session, message)

    async def _answer(self, session: _Session, message: SubmitSm) -> None:
        number = message.destination.number
        status = SmppCommandStatus.ESME_ROK
        now = time.monotonic()
        while self.window and now - self.window[0] > 1.0:
            self.window.popleft()
        if number.endswith(REFUSED):
            status = SmppCommandStatus.ESME_RINVDSTADR
        elif number.endswith(THROTTLED_ONCE) and number not in self.throttled_once:
            self.throttled_once.add(number)
            status = SmppCommandStatus.ESME_RTHROTTLED
        elif self.throttle_per_s and len(self.window) >= self.throttle_per_s:
            status = SmppCommandStatus.ESME_RTHROTTLED
        if status != SmppCommandStatus.ESME_ROK:
            with self.lock:
                key = "rejected" if status == SmppCommandStatus.ESME_RINVDSTADR else "throttled"
                self.counts[key] += 1
            await self._send(session, SubmitSmResp(message.sequence_num, status))
            return
        self.window.append(now)
        message_id = uuid.uuid4().hex[:16]
        await self._send(session, SubmitSmResp(message.sequence_num, message_id=message_id))
        self._keep(message, message_id)
        if message.registered_delivery & 0b11:
            asyncio.get_running_loop().call_later(
                self.receipt_delay_s, self._receipt, message, message_id, session.system_id)

    async def _hold(self, session: _Session, message: SubmitSm) -> None:
        number = message.destination.number
        with self.lock:
            self.holding.add(number)
        try:
            deadline = time.monotonic() + HOLD_S
            while time.monotonic() < deadline and session in self.sessions:
                await asyncio.sleep(0.05)
        finally:
            with self.lock:
                self.holding.discard(number)
        if session in self.sessions:  # still there: answered late, like a slow SMSC
            await self._answer(session, message)

    def holding_now(self) -> list[str]:
        with self.lock:
            return sorted(self.holding)

    def _keep(self, message: SubmitSm, message_id: str) -> None:
        ref, seq, total = message.get_segmentation_data()
        number, text = message.destination.number, message.short_message
        with self.lock:
            self.counts["submitted"] += 1
            if total <= 1:
                self.received.append(Received(number, message.source.number, text, 1,
                                              [message_id], time.time()))
                return
            parts = self.parts.setdefault((number, ref), {})
            parts[seq] = (text, message_id)
            if len(parts) == total:
                del self.parts[(number, ref)]
                ordered = [parts[i] for i in sorted(parts)]
                self.received.append(Received(
                    number, message.source.number, "".join(t for t, _ in ordered), total,
                    [i for _, i in ordered], time.time()))

    def _receipt(self, message: SubmitSm, message_id: str, system_id: str) -> None:
        now = datetime.now()
        stat = "UNDELIV" if message.destination.number.endswith(UNDELIVERABLE) else "DELIVRD"
        text = DeliverSm.encode_receipt({
            "id": message_id, "sub": 1, "dlvrd": int(stat == "DELIVRD"), "submit date": now,
            "done date": now, "stat": stat, "err": 0 if stat == "DELIVRD" else 1,
            "text": ""})
        with self.lock:
            self.counts["receipts"] += 1
        self._deliver(DeliverSm(short_message=text, source=message.destination,
                                destination=message.source, esm_class=0b00000100,
                                registered_delivery=0), system_id)

    def _deliver(self, deliver: DeliverSm, system_id: str | None = None) -> None:
        receivers = [s for s in self.sessions if s.receives
                     and (system_id is None or s.system_id == system_id)]
        if not receivers:
            self.held.append(deliver)
            return
        session = receivers[self.counts["receipts"] % len(receivers)]
        task = asyncio.get_running_loop().create_task(
            self._send(session, deliver, new_sequence=True))
        task.add_done_callback(lambda t: t.exception())  # a closed session: it is gone

    async def _send(self, session: _Session, message: SmppMessage,
                    new_sequence: bool = False) -> None:
        if new_sequence:
            message.sequence_num = next(session.sequence)
        if isinstance(message, DeliverSm):
            message.set_encoding_info("gsm0338", None)
        session.writer.write(message.pdu())
        with contextlib.suppress(ConnectionError):
            await session.writer.drain()
