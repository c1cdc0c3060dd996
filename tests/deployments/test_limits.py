"""Abuse limits on the public endpoints, over the real proxy: one client (or session) is
held back with 429 and Retry-After while another goes on. Clients differ by source
address: the loopback network is a /8, so 127.0.0.x are distinct clients here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import select
import socket

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


# Bodies ---------------------------------------------------------------------------------

HUGE = 50 * 2**20


def _post_huge(stack: Stack, path: str, source: str, chunked: bool = False) -> tuple[int, int]:
    """POST a 50 MiB body (declared, or streamed in chunks) without credentials, stopping
    as soon as the server answers: (status, body bytes sent by then)."""
    port = int(stack.base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30,
                                  source_address=(source, 0)) as sock:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {HUGE}"
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode())
        piece, sent = b"[" + b"1," * 32767 + b"1", 0
        sock.settimeout(5)  # a server that stops reading: stop writing
        while sent < HUGE and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked
                             else piece)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            sent += len(piece)
            if not chunked and sent >= 4 * len(piece):
                break  # declared: the answer needs no more of it
        sock.settimeout(30)
        reply = b""
        with contextlib.suppress(ConnectionResetError):
            while b"\r\n" not in reply and (data := sock.recv(4096)):
                reply += data
    return int(reply.split()[1]), sent


def _post_paths() -> list[str]:
    from deployments.chatbot import chat_api
    from deployments.dashboard import api

    def concrete(path: str) -> str:
        return re.sub(r"\{[^}]+\}", "0" * 32, path)
    return ([concrete(p) for p, ops in api.openapi()["paths"].items() if "post" in ops]
            + ["/chat" + concrete(p) for p, ops in chat_api.openapi()["paths"].items()
               if "post" in ops])


def _replicas_rss_mib() -> float:
    from ray.util.state import list_actors

    pids = [a.pid for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
            if a.class_name.startswith("ServeReplica:operator-comms")]
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return total / 1024


def test_a_50_mib_body_to_any_post_is_refused_unread(stack: Stack) -> None:
    """Declared: 413 by its Content-Length; streamed (chunked): 411. Either way the
    replicas do not grow by it."""
    paths = _post_paths()
    assert "/api/customers/import" in paths and "/chat/api/sessions" in paths
    before = _replicas_rss_mib()
    for n, path in enumerate(paths):
        status, _ = _post_huge(stack, path, f"127.0.1.{n + 1}")
        assert status == 413, path
    for path in ("/chat/api/sessions", "/api/campaigns", "/api/auth/token"):
        # Streamed without a length: refused before any of it is asked for.
        status, _ = _post_huge(stack, path, "127.0.2.1", chunked=True)
        assert status == 411, path
    # Nothing past a route's limit was held: the replicas did not grow by a body's size.
    assert _replicas_rss_mib() - before < 25
