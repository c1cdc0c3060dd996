"""Abuse limits on the public endpoints, over the real proxy: one client (or session) is
held back with 429 and Retry-After while another goes on. Clients differ by source
address: the loopback network is a /8, so 127.0.0.x are distinct clients here."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from tests.deployments.test_chat import new_session
from tests.utils.stack import Stack


def _client(stack: Stack, address: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address)
    return httpx.Client(base_url=stack.base_url, transport=transport, timeout=30)


def _until_refused(call, at_most: int) -> tuple[httpx.Response, int]:
    for n in range(1, at_most + 1):
        response = call()
        if response.status_code == 429:
            return response, n
    raise AssertionError(f"no 429 in {at_most} requests")


def _retry_after(response: httpx.Response) -> int:
    seconds = int(response.headers["retry-after"])
    assert 1 <= seconds <= 60
    return seconds


def test_one_address_creating_sessions_is_limited_and_another_is_not(stack: Stack) -> None:
    limit = stack.settings.limit_chat_sessions_per_ip
    replicas = 2  # each replica holds its own buckets; creation is spread over them
    with _client(stack, "127.0.0.21") as greedy, _client(stack, "127.0.0.22") as other:
        # At most: every replica's minute, plus what refills while these run (a
        # loaded machine is slow), with room to spare.
        refused, n = _until_refused(lambda: greedy.post("/chat/api/sessions", json={}),
                                    3 * replicas * limit)
        assert n > limit  # the first minute's worth always goes through
        assert "too many new sessions" in refused.json()["detail"]
        _retry_after(refused)
        assert other.post("/chat/api/sessions", json={}).status_code == 201


def test_one_session_sending_too_fast_is_limited_and_another_is_not(stack: Stack) -> None:
    limit = stack.settings.limit_chat_turns_per_session
    busy, calm = new_session(stack), new_session(stack)

    def say(session: dict, client: httpx.Client) -> httpx.Response:
        return client.post(f"/chat/api/sessions/{session['session_id']}/messages",
                           json={"text": "1"},
                           headers={"Authorization": f"Bearer {session['token']}",
                                    "x-session-id": session["session_id"]})

    with stack.client(admin=False) as client:
        refused, n = _until_refused(lambda: say(busy, client), 2 * limit)
        assert n > limit  # refills add a turn a second while these run
        assert "too many messages" in refused.json()["detail"]
        _retry_after(refused)
        assert say(calm, client).status_code == 200


async def test_a_socket_sending_too_fast_gets_an_error_frame_and_stays_open(
        stack: Stack) -> None:
    limit = stack.settings.limit_chat_turns_per_session
    session = new_session(stack)
    url = stack.base_url.replace("http", "ws") + f"/chat/ws/{session['session_id']}"
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"token": session["token"]}))
        # Twice the minute: the socket checks each message as it takes its turn, and a
        # loaded machine's slower turns let a few tokens refill meanwhile.
        for _ in range(2 * limit):
            await socket.send(json.dumps({"text": "hello"}))
        async with asyncio.timeout(120):
            while True:
                frame = json.loads(await socket.recv())
                if frame["type"] == "error":
                    break
        assert frame["field"] == "text" and frame["retry_after"] >= 1
        assert "too many messages" in frame["message"]


def test_unsubscribe_links_are_limited_per_address(stack: Stack) -> None:
    limit = stack.settings.limit_unsubscribe_per_ip
    with _client(stack, "127.0.0.23") as prober, _client(stack, "127.0.0.24") as other:
        refused, n = _until_refused(lambda: prober.get("/unsubscribe/not-a-real-token"),
                                    4 * limit + 20)
        assert n > limit and "Too many requests" in refused.text
        _retry_after(refused)
        assert other.get("/unsubscribe/not-a-real-token").status_code == 404
