"""What one chat replica does: turns on remembered sessions, summaries and events in bulk.

One `Conversations` per ChatBot replica (no Ray here: the chat hub and the event
consumers arrive as callables).

- A turn on a session this replica remembers is one insert (`chat.take_turn`, the
  compare-and-swap); a session it does not remember costs two reads first. The token
  is checked against the remembered hash on every call.
- Session summaries (node, ended, last number) are collected per session and written
  in one bulk write every FLUSH_S, never on the turn's path; the sessions' moves in
  the chat roll-up (`app.core.rollups`) follow in one more write.
- A turn that emits events wakes the hand-off loop, which gives them to their
  consumers at once and then stores them with two writes per batch. A sweep every
  SWEEP_S picks up events a stopped replica left in an outbox.
- Sockets held by this replica are woken by turns taken here. Sockets held by other
  replicas hear through the `Doorbell` (the chat hub), which is rung only for a
  session with a socket elsewhere: the replica follows the hub's count of sockets
  per session (`follow_listeners`), so turns nobody watches cost no call. A socket
  opened elsewhere a moment before a turn may miss that ring; it re-reads on its
  wait's timeout, so the message is late, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase

from app.chat import sessions as chat
from app.chat import verification
from app.chat.flow_engine import Flow
from app.core import rollups
from app.observability import tracing

log = logging.getLogger("operator_comms.conversations")
FLUSH_S = 1.0
SWEEP_S = 30.0
# Presence: this replica tells the hub it is up this often; the hub forgets the sockets
# of a replica it has not heard from for three beats (`actors.chat_hub`).
PRESENCE_BEAT_S = 2.0
STRANDED_AFTER_S = 10.0
RETRY_S = 1.0

Consumer = Callable[[dict], Awaitable[Any]]


class Doorbell(Protocol):
    """How replicas wake each other's sockets (`actors.chat_hub.HubDoorbell`)."""

    def ring(self, session_id: str, seq: int) -> None: ...
    async def wait(self, session_id: str, after: int, timeout_s: float,
                   socket_id: str) -> int | None: ...
    async def listen(self, session_id: str, socket_id: str) -> None: ...
    async def unlisten(self, session_id: str, socket_id: str) -> None: ...
    async def changes(self, epoch: str | None, since: int) -> tuple[
        str, int, dict[str, int] | None, list[tuple[str, int]]]: ...
    async def alive(self, owner: str, sockets: dict[str, str] | None) -> str: ...


class Bell:
    """Rung with the newest sequence number of a session written on this replica."""

    def __init__(self) -> None:
        self.latest = 0
        self.event = asyncio.Event()
        self.socket_id = ""

    def ring(self, seq: int) -> None:
        self.latest = max(self.latest, seq)
        self.event.set()

    async def wait(self) -> int:
        await self.event.wait()
        self.event.clear()
        return self.latest


class Conversations:
    def __init__(self, db: AsyncDatabase, flow: Flow, *, where: str,
                 consumers: dict[str, Consumer], doorbell: Doorbell,
                 send_code: Callable[[verification.Delivery], Awaitable[Any]] | None = None
                 ) -> None:
        self.db = db
        self.flow = flow
        self.where = where
        self.consumers = consumers
        self.doorbell = doorbell
        self.send_code = send_code
        self.sending: set[asyncio.Task] = set()  # codes on their way, held till sent
        self.sockets_anywhere: dict[str, int] = {}  # session -> sockets (the hub's view)
        self.memory = chat.SessionMemory()
        self.summaries: dict[str, Any] = {}   # session -> its latest summary update
        self.moves = rollups.Increments()     # the chat roll-up's, since the last flush
        self.events: list[dict] = []          # to hand on
        self.traces: dict[str, dict] = {}     # event id -> its turn's trace, when tracing
        self.wake = asyncio.Event()
        self.bells: dict[str, set[Bell]] = {}  # session -> sockets held here

    # Turns -----------------------------------------------------------------------------

    async def open(self, session_id: str, token: str) -> chat.Known:
        """The session, if this token opens it (SessionNotFound otherwise)."""
        known = self.memory.get(session_id)
        if known is None:
            known = await chat.load_session(self.db, session_id)
            if known is None:
                raise chat.SessionNotFound(session_id)
            self.memory.put(session_id, known)
        known.check(token, session_id)
        return known

    async def create(self, email: str | None = None, phone: str | None = None
                     ) -> tuple[str, str, bool, list[dict]]:
        """(session id, token, whether an address was claimed, greeting).

        A claimed address is linked only when its code comes back (`verify`); the code
        goes out through `send_code` after the session is stored, and only to a
        customer's address: the answer is the same for anyone's."""
        session_id = chat.new_session_id()
        claimed = await verification.claim(self.db, session_id, email=email, phone=phone)
        contact = {"email": verification.normal_email(email),
                   "phone": verification.normal_phone(phone)}
        session_id, token, known, docs = await chat.create_session(
            self.db, self.flow, contact=contact, session_id=session_id, where=self.where,
            verification=claimed.pending if claimed else None, moves=self.moves)
        self.memory.put(session_id, known)
        if claimed and claimed.delivery and self.send_code is not None:
            task = asyncio.get_running_loop().create_task(self._send_code(claimed.delivery))
            self.sending.add(task)
            task.add_done_callback(self.sending.discard)
        return session_id, token, claimed is not None, docs

    async def _send_code(self, delivery: verification.Delivery) -> None:
        if self.send_code is None:  # (a claim is made only with a courier)
            return
        try:
            await self.send_code(delivery)
        except Exception:  # the customer asks again; the address is not logged
            log.exception("chat code by %s not sent", delivery.channel)

    async def verify(self, session_id: str, token: str, code: str) -> bool:
        """Link the session to the customer whose address got this code."""
        known = await self.open(session_id, token)
        customer_id = await verification.verify(self.db, session_id, code)
        if customer_id is None:
            return False
        known.customer_id = customer_id
        # A message says so, and moves the session on: a replica that remembers it
        # unproven collides on its next turn and re-reads the customer (`chat.refresh`).
        docs = await chat.append_system_turn(
            self.db, session_id, verification.confirmation(self.flow, known.state),
            role="bot", known=known)
        self._written(session_id, known, docs)
        return True

    async def turn(self, session_id: str, token: str, text: str) -> list[dict]:
        known = await self.open(session_id, token)
        docs = await chat.take_turn(self.db, self.flow, session_id, known, text, self.moves)
        self._written(session_id, known, docs)
        if log.isEnabledFor(logging.INFO):
            log.info("session %s: turn at step %s, %d replies%s", session_id,
                     docs[-1].get("state_after", {}).get("node"), len(docs) - 1,
                     "".join(f", {event}" for doc in docs for event in doc.get("events", ())))
        return docs

    async def read(self, session_id: str, token: str, after: int) -> list[dict]:
        await self.open(session_id, token)
        return await chat.messages_after(self.db, session_id, after)

    async def clear(self, session_id: str, token: str) -> list[dict]:
        known = await self.open(session_id, token)
        docs = await chat.clear_conversation(self.db, self.flow, session_id, known,
                                             self.moves)
        self._written(session_id, known, docs)
        return docs

    def _written(self, session_id: str, known: chat.Known, docs: list[dict]) -> None:
        self.summaries[session_id] = chat.summary_update(session_id, docs, self.where)
        events = chat.events_of(docs, known.customer_id)
        if events:
            self.events += events
            trace = tracing.carrier()
            if trace:
                self.traces.update((event["_id"], trace) for event in events)
            self.wake.set()
        here = self.bells.get(session_id, ())
        for bell in here:
            bell.ring(docs[-1]["seq"])
        if self.sockets_anywhere.get(session_id, 0) > len(here):
            self.doorbell.ring(session_id, docs[-1]["seq"])

    # Sockets ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def listening(self, session_id: str) -> AsyncIterator[Bell]:
        """A bell rung by every turn this replica takes on the session; the hub knows
        of the socket while it is open, so the other replicas ring too."""
        bell = Bell()
        bell.socket_id = f"{self.where}/{uuid.uuid4().hex}"  # the hub groups by replica
        self.bells.setdefault(session_id, set()).add(bell)
        try:
            await self.doorbell.listen(session_id, bell.socket_id)
            yield bell
        finally:
            bells = self.bells.get(session_id, set())
            bells.discard(bell)
            if not bells:
                self.bells.pop(session_id, None)
            try:
                await self.doorbell.unlisten(session_id, bell.socket_id)
            except Exception as exc:  # the hub counts the socket until it restarts
                log.warning("session %s: telling the hub a socket closed: %s",
                            session_id, exc)

    async def wait_elsewhere(self, session_id: str, bell: Bell, after: int,
                             timeout_s: float) -> int | None:
        """The newest number rung from elsewhere once after `after`; None on timeout."""
        return await self.doorbell.wait(session_id, after, timeout_s, bell.socket_id)

    async def follow_listeners(self) -> None:
        """Keep `sockets_anywhere` in step with the hub; runs for ever."""
        epoch, version = None, 0
        while True:
            try:
                epoch, version, everything, changes = await self.doorbell.changes(
                    epoch, version)
            except Exception as exc:
                log.warning("following the chat hub: %s; will retry", exc)
                epoch = None
                await asyncio.sleep(RETRY_S)
                continue
            if everything is not None:
                self.sockets_anywhere = dict(everything)
            for session_id, sockets in changes:
                if sockets:
                    self.sockets_anywhere[session_id] = sockets
                else:
                    self.sockets_anywhere.pop(session_id, None)

    # Background: summaries and events -------------------------------------------------

    async def keep_present(self) -> None:
        """Tell the hub this replica is up, every PRESENCE_BEAT_S; its open sockets go
        along when the hub is new (it restarted and forgot them). Runs for ever."""
        epoch = None
        while True:
            sockets = None
            if epoch is None:
                sockets = {bell.socket_id: session_id
                           for session_id, bells in self.bells.items() for bell in bells}
            try:
                now_epoch = await self.doorbell.alive(self.where, sockets)
                epoch = now_epoch if epoch in (None, now_epoch) else None
            except Exception as exc:
                log.warning("telling the chat hub this replica is up: %s; will retry", exc)
                epoch = None
            await asyncio.sleep(PRESENCE_BEAT_S)

    def run_in_background(self) -> list[asyncio.Task]:
        loop = asyncio.get_running_loop()
        return [loop.create_task(self.run()), loop.create_task(self.follow_listeners()),
                loop.create_task(self.keep_present())]

    async def run(self) -> None:
        """Flush summaries, hand on events, sweep for stranded ones; runs for ever."""
        last_sweep = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), FLUSH_S)
            self.wake.clear()
            try:
                await self.flush()
                if time.monotonic() - last_sweep > SWEEP_S:
                    last_sweep = time.monotonic()
                    self.events += await chat.stranded_events(self.db, STRANDED_AFTER_S)
                if not await self.hand_on():
                    await asyncio.sleep(RETRY_S)
            except Exception as exc:  # the database is down: keep what we hold, retry
                log.warning("chat background work: %s; will retry", exc)
                await asyncio.sleep(RETRY_S)

    async def flush(self) -> None:
        """Write the collected session summaries (one command for all of them), then
        the sessions' moves in the chat roll-up (one more)."""
        if self.summaries:
            taken, self.summaries = self.summaries, {}
            try:
                await self.db.chat_sessions.bulk_write(list(taken.values()), ordered=False)
            except Exception:
                for session_id, update in taken.items():  # newer ones win
                    self.summaries.setdefault(session_id, update)
                raise
        if self.moves:
            # Taken, not swapped: a turn awaiting its insert holds `self.moves` and
            # records its move there when it lands, for the next flush.
            moves = self.moves.take()
            try:
                await rollups.write(self.db, moves)
            except Exception:
                self.moves.merge(moves)
                raise

    async def hand_on(self) -> bool:
        """Give waiting events to their consumers, store those taken; False if any
        consumer failed (its events stay for the next round)."""
        if not self.events:
            return True
        taken, self.events = self.events, []
        outcomes = await asyncio.gather(*(self._consume(event) for event in taken),
                                        return_exceptions=True)
        failed = {event["_id"] for event, outcome in zip(taken, outcomes, strict=True)
                  if isinstance(outcome, BaseException)}
        for event, outcome in zip(taken, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("event %s (%s): consumer failed: %s; will retry", event["_id"],
                            event["type"], outcome)
        # A message's outbox closes only once every event it carries was taken.
        open_messages = {e.get("message_id") for e in taken if e["_id"] in failed}
        retry = [e for e in taken if e["_id"] in failed
                 or (e.get("message_id") is not None and e["message_id"] in open_messages)]
        retry_ids = {e["_id"] for e in retry}
        done = [e for e in taken if e["_id"] not in retry_ids]
        try:
            await chat.record_events(self.db, done)
        except Exception:
            self.events = taken + self.events
            raise
        self.events = retry + self.events
        return not retry

    async def _consume(self, event: dict) -> None:
        consumer = self.consumers.get(event["type"])
        # The consumer's call carries on the turn's trace (when tracing; its first try
        # only, and not a stranded event's after a restart).
        with tracing.attached(self.traces.pop(event["_id"], None)):
            if consumer is not None:
                await consumer({k: v for k, v in event.items() if k != "message_id"})
