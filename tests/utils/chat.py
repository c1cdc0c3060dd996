"""Chat helpers for tests through the proxy: sessions, and proving an address with the
code the app mailed to it (read back from the embedded SMTP sink's outbox)."""

from __future__ import annotations

import re

import httpx

from app.channels.email.composer import CODE_SUBJECT
from tests.utils.stack import Stack
from tests.utils.waiting import wait_until


def new_session(stack: Stack, **contact: str) -> dict:
    with stack.client(admin=False) as client:
        response = client.post("/chat/api/sessions", json=contact)
    assert response.status_code == 201, response.text
    return response.json()


def code_mails(api: httpx.Client, email: str) -> list[dict]:
    messages = api.get("/api/outbox", params={"to": email}).json()["messages"]
    return [m for m in messages if m["subject"] == CODE_SUBJECT]


def code_in(api: httpx.Client, mail: dict) -> str:
    raw = api.get(f"/api/outbox/{mail['key']}").text
    return re.search(r"code is ([0-9]{6})", raw).group(1)


def code_sent_to(api: httpx.Client, email: str) -> str:
    """The newest chat code mailed to this address."""
    return code_in(api, wait_until(lambda: code_mails(api, email), 30,
                                   f"a chat code for {email}")[0])


def verify(stack: Stack, session: dict, code: str) -> httpx.Response:
    with stack.client(admin=False) as client:
        return client.post(f"/chat/api/sessions/{session['session_id']}/verify",
                           json={"code": code},
                           headers={"Authorization": f"Bearer {session['token']}"})


def verified_session(stack: Stack, api: httpx.Client, email: str) -> dict:
    """A session that claimed this customer's email and entered the code it got."""
    session = new_session(stack, email=email)
    response = verify(stack, session, code_sent_to(api, email))
    assert response.status_code == 200, response.text
    return session
