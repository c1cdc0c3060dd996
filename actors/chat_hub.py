"""The chat hub: a doorbell that tells open WebSockets a session has new messages.

Whoever writes to a session's inbox outside the replica holding its socket (another
ChatBot replica, the marketing actor) rings `publish(session, seq)`; the socket's
replica waits in `wait(session, after)` and then reads the new messages from
MongoDB, which stays the record.

The hub also knows which sessions have a socket open anywhere (`listen`/`unlisten`,
renewed by every `wait`), and replicas follow that set (`changes`), so a turn on a
session nobody watches costs no call at all. The hub keeps only the latest number
per session (bounded) and the listening set: losing it (a restart) costs a wake-up,
never a message; sockets re-read on a timeout and re-register with their next
`wait`, and a reconnecting client catches up from its cursor.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict, deque

import ray

from actors import registry

REMEMBERED_SESSIONS = 200_000
REMEMBERED_CHANGES = 50_000


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)
class ChatHub:
    def __init__(self) -> None:
        self.latest: OrderedDict[str, int] = OrderedDict()
        self.bells: dict[str, asyncio.Event] = {}
        self.sockets: dict[str, set[str]] = {}  # session -> socket ids listening
        self.epoch = uuid.uuid4().hex  # this life of the hub
        self.version = 0
        self.log: deque[tuple[int, str, int]] = deque(maxlen=REMEMBERED_CHANGES)
        self.changed = asyncio.Event()

    async def publish(self, session_id: str, seq: int) -> None:
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
            await self.publish(session_id, seq)

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
    """The hub as `app.conversations` sees it (a `Doorbell`): plain async methods."""

    def __init__(self, hub) -> None:
        self.hub = hub

    def ring(self, session_id: str, seq: int) -> None:
        self.hub.publish.remote(session_id, seq)  # fire and forget: a wake-up only

    async def publish_many(self, rings: list[tuple[str, int]]) -> None:
        for session_id, seq in rings:
            await self.publish(session_id, seq)

    async def wait(self, session_id: str, after: int, timeout_s: float,
                   socket_id: str) -> int | None:
        return await self.hub.wait.remote(session_id, after, timeout_s, socket_id)

    async def listen(self, session_id: str, socket_id: str) -> None:
        await self.hub.listen.remote(session_id, socket_id)

    async def unlisten(self, session_id: str, socket_id: str) -> None:
        await self.hub.unlisten.remote(session_id, socket_id)

    async def changes(self, epoch: str | None, since: int):
        return await self.hub.changes.remote(epoch, since)


def chat_hub(resources: dict[str, float] | None = None):
    return registry.get_or_create(ChatHub, registry.CHAT_HUB, resources=resources)
