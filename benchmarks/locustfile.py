"""Locust load for operator-comms: chat customers and operators watching campaigns.

Chat customers run whole conversations (including Turbo refusals, which make the
marketing actor schedule counter-offers) at a person's pace; operators poll campaign
status. Each conversation comes from an address of its own, said in X-Forwarded-For
as a load balancer would (the app under test trusts it: COMMS_TRUST_FORWARDED_FOR),
so the per-address limits meet a customer, not the one address Locust runs on.

Environment variables:
    COMMS_ADMIN_TOKEN   admin token for the operator users (operators are skipped without it)
    CHAT_WEIGHT         relative number of chat customers (default 9)
    OPERATOR_WEIGHT     relative number of operators (default 1)

Command (the app running on :8000, e.g. from `make run`):
    COMMS_ADMIN_TOKEN=$(cat .data/admin_token) locust -f benchmarks/locustfile.py \\
        --host http://localhost:8000 --headless -u 100 -r 20 -t 60s
"""

from __future__ import annotations

import os
import random

from locust import FastHttpUser, between, task

CONVERSATIONS = [
    ["1", "1", "2"],                 # client, upgrade, refuse Turbo (a counter-offer follows)
    ["1", "1", "1"],                 # client, upgrade, accept Turbo
    ["1", "2", "1", "1", "2"],       # billing: second copy, nothing else
    ["1", "2", "2", "2", "1"],       # support: slow internet, solved
    ["2", "2"],                      # new customer, no consultant
    ["1", "hello", "1", "2"],        # a confused answer on the way
]
ADMIN_TOKEN = os.environ.get("COMMS_ADMIN_TOKEN", "")


def customer_address() -> dict[str, str]:
    """A simulated customer's own address (loopback: nothing real is named)."""
    return {"X-Forwarded-For": f"127.{random.randrange(1, 255)}.{random.randrange(256)}."
                               f"{random.randrange(1, 255)}"}


class ChatCustomer(FastHttpUser):
    weight = int(os.environ.get("CHAT_WEIGHT", "9"))
    wait_time = between(0.5, 1.5)

    @task
    def conversation(self) -> None:
        address = customer_address()
        response = self.client.post("/chat/api/sessions", json={}, headers=address,
                                    name="POST /chat/api/sessions")
        if not response.ok:
            return
        session = response.json()
        # x-session-id: Serve routes every call of the session to the replica that
        # remembers it (any replica could answer; this one answers from memory).
        headers = {"Authorization": f"Bearer {session['token']}",
                   "x-session-id": session["session_id"], **address}
        path = f"/chat/api/sessions/{session['session_id']}/messages"
        for text in random.choice(CONVERSATIONS):
            self.wait()
            self.client.post(path, json={"text": text}, headers=headers,
                             name="POST /chat/api/sessions/[id]/messages")
        self.client.get(path, headers=headers, name="GET /chat/api/sessions/[id]/messages")


class Operator(FastHttpUser):
    weight = int(os.environ.get("OPERATOR_WEIGHT", "1")) if ADMIN_TOKEN else 0
    wait_time = between(2, 5)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    @task(5)
    def poll_campaigns(self) -> None:
        response = self.client.get("/api/campaigns?limit=20", headers=self.headers,
                                   name="GET /api/campaigns")
        if response.ok and response.json()["campaigns"]:
            campaign = random.choice(response.json()["campaigns"])
            self.client.get(f"/api/campaigns/{campaign['id']}", headers=self.headers,
                            name="GET /api/campaigns/[id]")

    @task(1)
    def marketing(self) -> None:
        self.client.get("/api/marketing", headers=self.headers, name="GET /api/marketing")
