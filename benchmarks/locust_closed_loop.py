"""Closed-loop Locust users (no wait between requests) for the maximum request rate.

BENCH_TARGET=noop: POST /noop/turn (the no-op ingress); BENCH_TARGET=chat: each user
opens one chat session and then takes turns on it as fast as answers come back,
answering with the conversations of `locustfile.py` in turn (refusals, acceptances,
billing, support...), so the events and counter-offers they cause are in the cost.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
from pathlib import Path

from locust import FastHttpUser, constant, task

sys.path.insert(0, str(Path(__file__).parent))
from locustfile import CONVERSATIONS  # noqa: E402

TARGET = os.environ.get("BENCH_TARGET", "chat")


class NoOpUser(FastHttpUser):
    weight = 1 if TARGET == "noop" else 0
    wait_time = constant(0)

    @task
    def turn(self) -> None:
        self.client.post("/noop/turn", json={"text": "1"}, name="POST /noop/turn")


class TurnUser(FastHttpUser):
    weight = 1 if TARGET == "chat" else 0
    wait_time = constant(0)

    def on_start(self) -> None:
        session = self.client.post("/chat/api/sessions", json={},
                                   name="POST /chat/api/sessions").json()
        self.path = f"/chat/api/sessions/{session['session_id']}/messages"
        self.headers = {"Authorization": f"Bearer {session['token']}",
                        "x-session-id": session["session_id"]}
        # Each conversation ends where the flow ends; the next answer starts a new one.
        self.answers = itertools.chain.from_iterable(
            random.choice(CONVERSATIONS) for _ in itertools.count())

    @task
    def turn(self) -> None:
        self.client.post(self.path, json={"text": next(self.answers)}, headers=self.headers,
                         name="POST /chat/api/sessions/[id]/messages")
