"""Abuse limits on the public endpoints: per client address on chat session creation,
unsubscribe links and sign-in attempts, per session on chat turns (REST and WebSocket messages).

Buckets live in each replica (`app.ratelimit.KeyedLimits`, a minute's worth of burst,
bounded in keys): a session's turns carry `x-session-id` and reach one replica, so its
limit holds as configured; session creation is spread over the replicas, so a client
gets up to replicas x its limit there. A refused HTTP request gets 429 with
Retry-After; a refused WebSocket message gets an error frame saying when to retry.
Behind a load balancer set `COMMS_TRUST_FORWARDED_FOR`, so the client's address comes
from the last hop of X-Forwarded-For (the one the balancer added), not the balancer.
"""

from __future__ import annotations

import math

from fastapi import HTTPException
from starlette.requests import HTTPConnection

from app.config import Settings
from app.ratelimit import KeyedLimits


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


def enforce(limits: KeyedLimits, key: str, what: str) -> None:
    """Count one request for `key`; 429 with Retry-After when it is over its limit."""
    wait = limits.check(key)
    if wait > 0:
        seconds = retry_after(wait)
        raise HTTPException(429, f"too many {what}: try again in {seconds} s",
                            headers={"Retry-After": str(seconds)})
