"""Input limits: request body sizes, and abuse limits on the public endpoints (per
client address on chat session creation, unsubscribe links and sign-in attempts, per
session on chat turns, REST and WebSocket messages).

Bodies: FastAPI's own `max_body_size` (Starlette's body limit) refuses with 413 a body
whose Content-Length is over the limit before reading any of it, and a streamed one at
the byte that crosses it. Both apps take `MAX_BODY_BYTES`; the audience import its own
`IMPORT_BODY_BYTES`. A chat socket's frame over `MAX_FRAME_CHARS` closes the socket.

The limits of `RATE_RULES` run in `LimitsFirst`, an ASGI middleware in front of the
app, so a refused client costs no body read, no parse and no database; paths are
matched within the app's prefix (`root_path`, `/chat` for the chat). It also refuses
a body of unknown length (chunked, 411): Serve's proxy hands the replica most of a
chunked body before any limit in the app can stop it (docs/security.md has the
measurement).

Buckets live in each replica (`app.core.ratelimit.KeyedLimits`, a minute's worth of burst,
bounded in keys): a session's turns carry `x-session-id` and reach one replica, so its
limit holds as configured; session creation is spread over the replicas, so a client
gets up to replicas x its limit there. A refused HTTP request gets 429 with
Retry-After; a refused WebSocket message gets an error frame saying when to retry.
Behind a load balancer set `COMMS_TRUST_FORWARDED_FOR`, so the client's address comes
from the last hop of X-Forwarded-For (the one the balancer added), not the balancer.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from starlette.requests import HTTPConnection

from app.audience.imports import MAX_IMPORT_BYTES
from app.core.config import Settings
from app.core.ratelimit import KeyedLimits

# JSON bodies: campaign templates are the largest (mail over about 100 KB is clipped by
# the big webmail clients anyway).
MAX_BODY_BYTES = 256 * 1024
IMPORT_BODY_BYTES = MAX_IMPORT_BYTES + 64 * 1024  # the file and its form's framing
MAX_FRAME_CHARS = 8 * 1024


class PublicLimits:
    def __init__(self, settings: Settings):
        self.sessions = KeyedLimits(settings.limit_chat_sessions_per_ip)
        self.turns = KeyedLimits(settings.limit_chat_turns_per_session)
        self.unsubscribe = KeyedLimits(settings.limit_unsubscribe_per_ip)
        self.sign_in = KeyedLimits(settings.limit_sign_in_per_ip)
        self.trust_forwarded = settings.trust_forwarded_for

    def client_address(self, connection: HTTPConnection) -> str:
        if self.trust_forwarded:
            forwarded = connection.headers.get("x-forwarded-for")
            if forwarded:
                return forwarded.rsplit(",", 1)[-1].strip()
        return connection.client.host if connection.client else "unknown"


def retry_after(wait_s: float) -> int:
    return max(1, math.ceil(wait_s))


# (method, route within the app, which limit, what it counts): a route with a group is
# limited per its value (the session), the others per client address.
RATE_RULES: list[tuple[str, re.Pattern, Callable[[PublicLimits], KeyedLimits], str]] = [
    ("POST", re.compile(r"^/api/sessions$"), lambda limits: limits.sessions, "new sessions"),
    ("POST", re.compile(r"^/api/sessions/([^/]+)/messages$"), lambda limits: limits.turns,
     "messages"),
    ("POST", re.compile(r"^/api/auth/token$"), lambda limits: limits.sign_in,
     "sign-in attempts"),
]


class LimitsFirst:
    """The `RATE_RULES` before the app reads anything: 429 with Retry-After."""

    def __init__(self, app: Any, limits: Callable[[], PublicLimits]):
        self.app = app
        self.limits = limits

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            if _chunked(scope):
                await _answer(send, 411, "send the body with a Content-Length: bodies of "
                                         "unknown length are refused")
                return
            wait, what = self.over(scope)
            if wait > 0:
                seconds = retry_after(wait)
                await _answer(send, 429, f"too many {what}: try again in {seconds} s",
                              (b"retry-after", str(seconds).encode()))
                return
        await self.app(scope, receive, send)

    def over(self, scope: dict) -> tuple[float, str]:
        path, root = scope["path"], scope.get("root_path", "")
        route = path[len(root):] if root and path.startswith(root) else path
        for method, pattern, which, what in RATE_RULES:
            if scope["method"] == method and (match := pattern.match(route)):
                limits = self.limits()
                key = match.group(1) if pattern.groups else limits.client_address(
                    HTTPConnection(scope))
                return which(limits).check(key), what
        return 0.0, ""


def _chunked(scope: dict) -> bool:
    """A body of unknown length (chunked). Serve's proxy hands a replica the chunks it has
    taken in so far in one message, so a limit counted in the replica would first hold
    megabytes of it: such a body is refused (411) before any of it is asked for."""
    return any(key == b"transfer-encoding" and b"chunked" in value.lower()
               for key, value in scope["headers"])


async def _answer(send: Any, status: int, detail: str, *headers: tuple[bytes, bytes]) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        *headers]})
    await send({"type": "http.response.body", "body": body})
