"""The chat hub: a doorbell that tells open WebSockets a session has new messages.

Whoever writes to a session's inbox (a ChatBot replica, the marketing actor) rings
`publish(session, seq)`; the replica holding that session's socket waits in
`wait(session, after)` and then reads the new messages from MongoDB, which stays
the record. The hub keeps only the latest sequence number per session (bounded),
so losing it (a restart) costs a wake-up, never a message: sockets also re-read on
a timeout, and a reconnecting client catches up from its cursor.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import ray

NAMESPACE = "operator-comms"
HUB_NAME = "chat-hub"
REMEMBERED_SESSIONS = 200_000


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=10_000)
class ChatHub:
    def __init__(self) -> None:
        self.latest: OrderedDict[str, int] = OrderedDict()
        self.bells: dict[str, asyncio.Event] = {}

    async def publish(self, session_id: str, seq: int) -> None:
        if seq > self.latest.get(session_id, 0):
            self.latest[session_id] = seq
        self.latest.move_to_end(session_id)
        while len(self.latest) > REMEMBERED_SESSIONS:
            self.latest.popitem(last=False)
        bell = self.bells.pop(session_id, None)
        if bell is not None:
            bell.set()

    async def wait(self, session_id: str, after: int, timeout_s: float = 20.0) -> int | None:
        """The session's newest number once it is after `after`; None on timeout (the
        caller then re-reads, in case a ring was lost)."""
        if self.latest.get(session_id, 0) > after:
            return self.latest[session_id]
        bell = self.bells.setdefault(session_id, asyncio.Event())
        try:
            await asyncio.wait_for(bell.wait(), timeout_s)
        except TimeoutError:
            return None
        return self.latest.get(session_id, after)


def chat_hub(resources: dict[str, float] | None = None):
    return ChatHub.options(name=HUB_NAME, namespace=NAMESPACE, lifetime="detached",
                           get_if_exists=True, resources=resources or {}).remote()
