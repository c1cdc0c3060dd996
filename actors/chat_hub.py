"""The chat hub: a doorbell that tells open WebSockets a session has new messages.

Whoever writes to a session's inbox outside the replica holding its socket (another
ChatBot replica, the marketing actor) rings `publish(session, seq)`; the socket's
replica waits in `wait(session, after)` and then reads the new messages from
MongoDB, which stays the record.

The hub also knows which sessions have a socket open anywhere (`listen`/`unlisten`,
renewed by every `wait`), and replicas follow that set (`changes`), so a turn on a
session nobody watches costs no call at all. That set is the chat's presence
(`online`, shown on the dashboard): every replica says it is up every two seconds
(`alive`), and the sockets of a replica not heard from for PRESENCE_TTL_S go (it died
or restarted); after a restart of the hub, each replica's next `alive` brings its open
sockets back. The hub keeps only the latest number
per session (bounded) and the listening set: losing it (a restart) costs a wake-up,
never a message; sockets re-read on a timeout and re-register with their next
`wait`, and a reconnecting client catches up from its cursor.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict, deque

import ray

from actors import registry
from app.core.config import Telemetry
from app.observability import telemetry, tracing

log = logging.getLogger("operator_comms.chat_hub")
REMEMBERED_SESSIONS = 200_000
REMEMBERED_CHANGES = 50_000
PRESENCE_TTL_S = 6.0  # three missed beats of a replica (app.chat.conversations)


def owner_of(socket_id: str) -> str | None:
    """The replica a socket belongs to (its id is `<replica>/<uuid>`)."""
    return socket_id.rsplit("/", 1)[0] if "/" in socket_id else None


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)
class ChatHub:
    def __init__(self) -> None:
        telemetry.setup(Telemetry(), "chat_hub")  # from the environment: no settings here
        self.latest: OrderedDict[str, int] = OrderedDict()
        self.bells: dict[str, asyncio.Event] = {}
        self.sockets: dict[str, set[str]] = {}  # session -> socket ids listening
        self.epoch = uuid.uuid4().hex  # this life of the hub
        self.version = 0
        self.log: deque[tuple[int, str, int]] = deque(maxlen=REMEMBERED_CHANGES)
        self.changed = asyncio.Event()
        self.seen: dict[str, float] = {}  # replica -> when it last said it is up
        self.reaper = asyncio.get_running_loop().create_task(self._reap())

    async def alive(self, owner: str, sockets: dict[str, str] | None = None) -> str:
        """A replica is up; `sockets` (socket -> session): its open sockets, sent when
        it does not know this life of the hub yet. Returns the hub's epoch."""
        self.seen[owner] = time.monotonic()
        for socket_id, session_id in (sockets or {}).items():
            self._listen(session_id, socket_id)
        return self.epoch

    async def online(self, session_ids: list[str]) -> list[str]:
        """Those of these sessions with a socket open now."""
        return [s for s in session_ids if self.sockets.get(s)]

    async def _reap(self) -> None:
        """Forget the sockets of replicas that stopped saying they are up."""
        while True:
            await asyncio.sleep(PRESENCE_TTL_S / 3)
            now = time.monotonic()
            gone = {owner for owner, at in self.seen.items() if now - at > PRESENCE_TTL_S}
            if not gone:
                continue
            for owner in gone:
                del self.seen[owner]
            for session_id, sockets in list(self.sockets.items()):
                dead = {s for s in sockets if owner_of(s) in gone}
                if dead:
                    sockets -= dead
                    if not sockets:
                        del self.sockets[session_id]
                    self._changed(session_id, len(sockets))

    async def publish(self, session_id: str, seq: int,
                      trace: dict[str, str] | None = None) -> None:
        if trace is not None:
            with tracing.span("chat.hub.ring", trace, session=session_id):
                self._publish(session_id, seq)
        else:
            self._publish(session_id, seq)

    def _publish(self, session_id: str, seq: int) -> None:
        if seq > self.latest.get(session_id, 0):
            self.latest[session_id] = seq
        self.latest.move_to_end(session_id)
        while len(self.latest) > REMEMBERED_SESSIONS:
            self.latest.popitem(last=False)
        bell = self.bells.pop(session_id, None)
        if bell is not None:
            bell.set()

    async def publish_many(self, rings: list[tuple[str, int]]) -> None:
        for session_id, seq in rings:
            self._publish(session_id, seq)

    async def wait(self, session_id: str, after: int, timeout_s: float = 20.0,
                   socket_id: str | None = None) -> int | None:
        """The session's newest number once it is after `after`; None on timeout (the
        caller then re-reads, in case a ring was lost)."""
        if socket_id is not None:
            self._listen(session_id, socket_id)
        if self.latest.get(session_id, 0) > after:
            return self.latest[session_id]
        bell = self.bells.setdefault(session_id, asyncio.Event())
        try:
            await asyncio.wait_for(bell.wait(), timeout_s)
        except TimeoutError:
            return None
        return self.latest.get(session_id, after)

    async def listen(self, session_id: str, socket_id: str) -> None:
        self._listen(session_id, socket_id)

    async def unlisten(self, session_id: str, socket_id: str) -> None:
        sockets = self.sockets.get(session_id)
        if sockets and socket_id in sockets:
            sockets.discard(socket_id)
            if not sockets:
                del self.sockets[session_id]
            self._changed(session_id, len(sockets))

    async def changes(self, epoch: str | None, since: int, timeout_s: float = 30.0
                      ) -> tuple[str, int, dict[str, int] | None, list[tuple[str, int]]]:
        """(epoch, version, every listened session's socket count or None, the changes
        since `since` as (session, sockets now)), once there is something newer (or on
        timeout). The whole set comes instead when `since` is too old or from another
        life of the hub."""
        if epoch == self.epoch and since == self.version:
            changed = self.changed
            try:
                await asyncio.wait_for(changed.wait(), timeout_s)
            except TimeoutError:
                return self.epoch, self.version, None, []
        oldest = self.log[0][0] if self.log else self.version + 1
        if epoch != self.epoch or since > self.version or since < oldest - 1:
            return (self.epoch, self.version,
                    {s: len(sockets) for s, sockets in self.sockets.items()}, [])
        return self.epoch, self.version, None, [(s, n) for v, s, n in self.log if v > since]

    def _listen(self, session_id: str, socket_id: str) -> None:
        owner = owner_of(socket_id)
        if owner is not None:
            self.seen.setdefault(owner, time.monotonic())
        sockets = self.sockets.setdefault(session_id, set())
        if socket_id not in sockets:
            sockets.add(socket_id)
            self._changed(session_id, len(sockets))

    def _changed(self, session_id: str, sockets: int) -> None:
        self.version += 1
        self.log.append((self.version, session_id, sockets))
        self.changed.set()
        self.changed = asyncio.Event()


class HubDoorbell:
    """The hub as `app.chat.conversations` sees it (a `Doorbell`): plain async methods."""

    def __init__(self, hub) -> None:
        self.hub = hub

    def ring(self, session_id: str, seq: int) -> None:
        # Fire and forget: a wake-up only (in the turn's trace, when tracing).
        self.hub.publish.remote(session_id, seq, tracing.carrier())

    async def wait(self, session_id: str, after: int, timeout_s: float,
                   socket_id: str) -> int | None:
        return await self.hub.wait.remote(session_id, after, timeout_s, socket_id)

    async def listen(self, session_id: str, socket_id: str) -> None:
        await self.hub.listen.remote(session_id, socket_id)

    async def unlisten(self, session_id: str, socket_id: str) -> None:
        await self.hub.unlisten.remote(session_id, socket_id)

    async def changes(self, epoch: str | None, since: int):
        return await self.hub.changes.remote(epoch, since)

    async def alive(self, owner: str, sockets: dict[str, str] | None) -> str:
        return await self.hub.alive.remote(owner, sockets)


def chat_hub(resources: dict[str, float] | None = None):
    return registry.get_or_create(ChatHub, registry.CHAT_HUB, resources=resources)


_hub = None


async def with_presence(overview: dict, resources: dict[str, float] | None = None) -> dict:
    """Mark each session of a sessions overview `online` (a socket open now) or not; left
    unmarked when the hub does not answer in time (the overview still answers)."""
    global _hub
    sessions = overview.get("sessions", [])
    if not sessions:
        return overview
    try:
        if _hub is None:
            _hub = chat_hub(resources)
        online = set(await asyncio.wait_for(
            _hub.online.remote([s["id"] for s in sessions]), 2.0))
    except Exception as exc:
        log.warning("presence unknown: the chat hub did not answer: %s", exc)
        return overview
    for session in sessions:
        session["online"] = session["id"] in online
    return overview
