"""Locust users that drive the chat at a set rate: no wait (closed loop, the maximum
rate), a fixed rate (paced), or a flood from one address.

BENCH_TARGET=noop: POST /noop/turn (the no-op ingress); BENCH_TARGET=chat: each user
opens SESSIONS_PER_USER sessions, each from an address of its own, and takes turns on
them in turn as fast as answers come back, answering with the conversations of
`locustfile.py` (refusals, acceptances, billing, support...), so the events and
counter-offers they cause are in the cost, and no abuse limit is met. BENCH_TARGET=paced:
the same at BENCH_RATE_PER_USER requests a second per user (an open loop, near enough,
with more users than requests in flight). BENCH_TARGET=flood: one address opening
sessions as fast as it can, which the per-address limit answers with 429.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
from pathlib import Path

from locust import FastHttpUser, constant, constant_throughput, task

sys.path.insert(0, str(Path(__file__).parent))
from locustfile import CONVERSATIONS, customer_address  # noqa: E402

TARGET = os.environ.get("BENCH_TARGET", "chat")
RATE_PER_USER = float(os.environ.get("BENCH_RATE_PER_USER", "1"))
FLOOD_ADDRESS = {"X-Forwarded-For": "127.250.0.1"}
# A customer's turns are limited (60 a minute, a minute's burst): a user takes its turns
# on this many sessions in turn, each a customer at an address of its own, so the
# closed loop measures turns, not the limit.
SESSIONS_PER_USER = 8


class NoOpUser(FastHttpUser):
    weight = 1 if TARGET == "noop" else 0
    wait_time = constant(0)

    @task
    def turn(self) -> None:
        self.client.post("/noop/turn", json={"text": "1"}, name="POST /noop/turn")


class TurnUser(FastHttpUser):
    weight = 1 if TARGET in ("chat", "paced") else 0
    wait_time = constant(0) if TARGET == "chat" else constant_throughput(RATE_PER_USER)

    def on_start(self) -> None:
        self.sessions = [self._session() for _ in range(SESSIONS_PER_USER)]
        self.turns = itertools.cycle(self.sessions)

    def _session(self) -> dict:
        address = customer_address()
        session = self.client.post("/chat/api/sessions", json={}, headers=address,
                                   name="POST /chat/api/sessions").json()
        # Each conversation ends where the flow ends; the next answer starts a new one.
        return {"path": f"/chat/api/sessions/{session['session_id']}/messages",
                "headers": {"Authorization": f"Bearer {session['token']}",
                            "x-session-id": session["session_id"], **address},
                "answers": itertools.chain.from_iterable(
                    random.choice(CONVERSATIONS) for _ in itertools.count())}

    @task
    def turn(self) -> None:
        session = next(self.turns)
        self.client.post(session["path"], json={"text": next(session["answers"])},
                         headers=session["headers"],
                         name="POST /chat/api/sessions/[id]/messages")


class FloodUser(FastHttpUser):
    weight = 1 if TARGET == "flood" else 0
    wait_time = constant(0)

    @task
    def session(self) -> None:
        with self.client.post("/chat/api/sessions", json={}, headers=FLOOD_ADDRESS,
                              name="POST /chat/api/sessions", catch_response=True) as reply:
            if reply.status_code == 429:  # the limit doing its job: counted apart
                reply.success()
                self.environment.events.request.fire(
                    request_type="LIMIT", name="429 refused", response_time=0,
                    response_length=0, exception=None, context={})
