"""A local web push service (RFC 8030) for local mode and tests: it plays both the
browser's push service and the browser's side of a subscription.

`subscribe()` makes a subscription as a browser would (an endpoint on this service, a
P-256 key pair and a 16-byte auth secret; `keys.p256dh` and `keys.auth` in base64url).
`POST /push/<id>` is a push: it needs `TTL`, `Content-Encoding: aes128gcm` and
`Authorization: vapid t=<JWT>,k=<public key>` (RFC 8292), whose ES256 signature is
checked against `k`, with `aud` this service's origin, `exp` in the next 24 hours and a
`sub` (mailto: or https:) - else 401 (403 when the key is not the one the subscription
was made for, if it named one). The body is decrypted with the subscription's private
key and auth secret (RFC 8291, `http_ece`) - 400 if it does not decrypt - and kept:
`received(id)` is exactly what a service worker would get. An unknown subscription is
404, one the browser dropped (`unsubscribe`) 410. Answers 201 with a Location.

Runs uvicorn on its own loop in a thread (`start`, `stop`), like the other stand-ins.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import secrets
import threading
import time
from dataclasses import dataclass, field

import http_ece
import jwt
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from embedded.processes import free_port


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Browser:
    """One subscription, as the browser holds it."""

    private_key: ec.EllipticCurvePrivateKey
    auth: bytes
    server_key: str | None = None  # the applicationServerKey it was made for, if named
    gone: bool = False
    received: list[bytes] = field(default_factory=list)


class PushService:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.browsers: dict[str, Browser] = {}
        self.refused: dict[str, int] = {}  # why pushes were refused, by status
        self.ids = itertools.count(1)
        self.lock = threading.Lock()
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/push/{sub}", self._push, methods=["POST"])])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- the browser's side --------------------------------------------------------
    def subscribe(self, server_key: str | None = None) -> dict:
        """A new subscription, as `pushManager.subscribe()` returns it (`toJSON()`)."""
        private = ec.generate_private_key(ec.SECP256R1())
        point = private.public_key().public_bytes(serialization.Encoding.X962,
                                                  serialization.PublicFormat.UncompressedPoint)
        auth = os.urandom(16)
        sub = f"{next(self.ids)}-{secrets.token_urlsafe(12)}"
        with self.lock:
            self.browsers[sub] = Browser(private, auth, server_key)
        return {"endpoint": f"{self.url}/push/{sub}",
                "keys": {"p256dh": b64url(point), "auth": b64url(auth)}}

    def unsubscribe(self, endpoint: str) -> None:
        with self.lock:
            self.browsers[endpoint.rsplit("/", 1)[1]].gone = True

    def received(self, endpoint: str) -> list[bytes]:
        with self.lock:
            browser = self.browsers.get(endpoint.rsplit("/", 1)[1])
            return list(browser.received) if browser else []

    # -- the push service ----------------------------------------------------------
    def _refuse(self, status: int, why: str) -> Response:
        with self.lock:
            self.refused[str(status)] = self.refused.get(str(status), 0) + 1
        return Response(why, status_code=status)

    async def _push(self, request: Request) -> Response:
        with self.lock:
            browser = self.browsers.get(request.path_params["sub"])
        if browser is None:
            return self._refuse(404, "no such subscription")
        if browser.gone:
            return self._refuse(410, "the subscription has expired or was unsubscribed")
        if "ttl" not in request.headers:
            return self._refuse(400, "TTL header required")
        if request.headers.get("content-encoding") != "aes128gcm":
            return self._refuse(415, "Content-Encoding must be aes128gcm")
        problem = self._vapid(request.headers.get("authorization", ""), browser)
        if problem is not None:
            return problem
        body = await request.body()
        if len(body) > 4096:
            return self._refuse(413, "payload too large")
        try:
            plain = http_ece.decrypt(body, private_key=browser.private_key,
                                     auth_secret=browser.auth, version="aes128gcm")
        except Exception as exc:  # (http_ece raises ECEException, ValueError, InvalidTag)
            return self._refuse(400, f"does not decrypt: {type(exc).__name__}")
        with self.lock:
            browser.received.append(plain)
        return Response(status_code=201, headers={
            "Location": f"{self.url}/m/{secrets.token_urlsafe(8)}"})

    def _vapid(self, header: str, browser: Browser) -> Response | None:
        scheme, _, rest = header.partition(" ")
        parts = dict(p.split("=", 1) for p in rest.split(",") if "=" in p)
        if scheme.lower() != "vapid" or "t" not in parts or "k" not in parts:
            return self._refuse(401, "Authorization: vapid t=...,k=... required")
        try:
            key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                               unb64url(parts["k"]))
            claims = jwt.decode(parts["t"], key, algorithms=["ES256"], audience=self.url,
                                options={"require": ["exp", "aud", "sub"]})
        except (ValueError, jwt.PyJWTError) as exc:
            return self._refuse(401, f"VAPID: {exc}")
        if claims["exp"] > time.time() + 24 * 3600:
            return self._refuse(401, "VAPID: exp more than 24 hours ahead")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return self._refuse(401, "VAPID: sub must be mailto: or https:")
        if browser.server_key is not None and parts["k"].rstrip("=") != browser.server_key:
            return self._refuse(403, "VAPID key is not the one subscribed with")
        return None

    # -- running -------------------------------------------------------------------
    def start(self) -> str:
        self.server = uvicorn.Server(uvicorn.Config(self.app, host=self.host, port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()),
                                       name="push-service", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
