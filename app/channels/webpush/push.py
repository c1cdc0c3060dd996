"""Sending a push (RFC 8030) to a browser's push service with pywebpush: the payload
encrypted for the subscription (RFC 8291, aes128gcm), signed with our VAPID key
(RFC 8292: a JWT for the push service's origin, cached per origin for an hour of its
twelve), over one aiohttp session per process and loop.

Outcomes: 201 (or 200/202) is sent; 404 and 410 say the subscription is gone (final:
the address takes nothing more); 429 is "slow down"; 413 and other 4xx are final; 5xx
and no answer are worth a retry. Only endpoints on an allowed push service are pushed
to (`allowed`): a subscription names its URL, and we do not post where a browser says.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from py_vapid import Vapid02
from pywebpush import WebPusher

from app.channels.webpush import vapid
from app.core.db import database
from app.core.statuses import AttemptOutcome

SENT, RETRY, FAILED, AUTH = AttemptOutcome
GONE = (404, 410)
TTL_S = 24 * 3600
JWT_FOR_S = 3600


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str
    auth: str = field(repr=False)

    def info(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


@dataclass(frozen=True)
class Push:
    subscription: Subscription
    payload: dict[str, Any]  # what the service worker gets (JSON)
    reference: str  # the delivery or offer it carries (logs)


@dataclass(frozen=True)
class PushOutcome:
    status: str
    code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class PushLogin:
    """Where our VAPID key is kept, and our contact (a route's target): the key is read
    from the database once per process (`app.channels.webpush.vapid`)."""

    contact: str  # mailto: or https: the push service may reach us at
    mongodb_uri: str = field(repr=False)
    mongodb_db: str = ""
    services: tuple[str, ...] = ()  # the push services allowed now (checked at each send)


def allowed(endpoint: str, services: list[str]) -> bool:
    """Whether the endpoint is on a push service the operator allows (host patterns,
    e.g. `*.notify.windows.com`; `http://127.0.0.1:8123` for the local one)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return False
    origin = f"{parts.scheme}://{parts.netloc}"
    for service in services:
        if "://" in service:
            if origin == service.rstrip("/"):
                return True
        elif parts.scheme == "https" and fnmatch.fnmatch(parts.hostname, service):
            return True
    return False


_sessions: dict[int, aiohttp.ClientSession] = {}


def _session() -> aiohttp.ClientSession:
    key = id(asyncio.get_running_loop())
    found = _sessions.get(key)
    if found is None or found.closed:
        found = _sessions[key] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=30, connect=10))
    return found


async def close_session() -> None:
    """Close this loop's session (a process's end, a test's)."""
    found = _sessions.pop(id(asyncio.get_running_loop()), None)
    if found is not None:
        await found.close()


class PushSender:
    """Sends one push at a time; the VAPID header signed once per origin an hour."""

    def __init__(self, login: PushLogin, keys: vapid.VapidKeys | None = None):
        self.login = login
        self.vapid: Vapid02 | None = (Vapid02.from_pem(keys.private_pem.encode())
                                      if keys is not None else None)
        self.headers: dict[str, tuple[float, dict[str, str]]] = {}

    async def _key(self) -> Vapid02:
        if self.vapid is None:
            keys = await vapid.ensure(database(self.login.mongodb_uri, self.login.mongodb_db))
            self.vapid = Vapid02.from_pem(keys.private_pem.encode())
        return self.vapid

    def _vapid_headers(self, endpoint: str) -> dict[str, str]:
        parts = urlsplit(endpoint)
        origin = f"{parts.scheme}://{parts.netloc}"
        cached = self.headers.get(origin)
        if cached is None or cached[0] < time.time():
            assert self.vapid is not None
            signed = self.vapid.sign({"aud": origin, "sub": self.login.contact,
                                      "exp": int(time.time()) + 12 * 3600})
            cached = self.headers[origin] = (time.time() + JWT_FOR_S, signed)
        return dict(cached[1])

    async def send(self, push: Push) -> PushOutcome:
        if self.login.services and not allowed(push.subscription.endpoint,
                                               list(self.login.services)):
            return PushOutcome(FAILED, None, "the subscription's push service is not "
                               "allowed (COMMS_WEBPUSH_SERVICES)")
        data = json.dumps(push.payload, separators=(",", ":"))
        await self._key()
        try:
            answer = await WebPusher(push.subscription.info(),
                                     aiohttp_session=_session()).send_async(
                data, headers=self._vapid_headers(push.subscription.endpoint),
                ttl=TTL_S, content_encoding="aes128gcm", timeout=30)
        except (aiohttp.ClientError, TimeoutError) as exc:
            return PushOutcome(RETRY, None, f"{type(exc).__name__}: {exc}"[:300])
        except (ValueError, TypeError) as exc:  # keys that are not a P-256 point
            return PushOutcome(FAILED, None, f"subscription keys: {exc}"[:300])
        status = answer.status
        if status in (200, 201, 202):
            return PushOutcome(SENT, status)
        text = (await answer.text())[:200]
        if status in GONE:
            return PushOutcome(FAILED, status, f"subscription gone: {text}")
        if status == 429:
            return PushOutcome(RETRY, 429, text)
        # 401/403: this subscription was made for another key (the browser's, not
        # the campaign's problem): final for it, like any other 4xx.
        return PushOutcome(FAILED if status < 500 else RETRY, status, text)

