"""A local WhatsApp Cloud API server for local mode and tests: the documented HTTP
shapes of the calls the app makes, on 127.0.0.1.

`POST /{version}/{phone-number-id}/messages` (bearer token) takes a text, a template or
an interactive message and answers `{"messaging_product": "whatsapp", "contacts": [...],
"messages": [{"id": "wamid..."}]}`, or an error `{"error": {"message", "type", "code",
"fbtrace_id"}}`: a wrong token is 401 (code 190); a template that is not approved is 400
(132001), one whose parameters do not match 400 (132000); above `throttle_per_s` 429
(130429). As on the real API, what becomes of an accepted message is posted to the
webhook later, as statuses: `sent`, then `delivered` for a number that has WhatsApp and
did not block the business, and `read` once the customer reads it; `failed` with 131026
(undeliverable: no WhatsApp, or blocked) or 131047 (free text outside the 24-hour window).
Statuses are posted in notifications of up to 100, as the API may batch them.

`POST /{version}/{app-id}/subscriptions` (the app's token) points the webhook at a
callback URL after the verification handshake (`GET ?hub.mode=subscribe&hub.challenge=
...&hub.verify_token=...`, which must echo the challenge). Every POST to the webhook is
signed: `X-Hub-Signature-256: sha256=HMAC(app secret, body)`; the app secret is made
at random per server (`app_secret`), and delivery is retried while the webhook does not
answer 200.

The customers' side, for tests and the console: `register` a number (it has WhatsApp;
`reads` says whether the customer reads what arrives), `say` a text, `press` a reply
button or list row, `read`, `block`; `sent` says what the business sent each number.
Runs uvicorn on its own loop in a thread (`start`, `stop`), like the Bot API server.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.channels.whatsapp.api import LOCAL_TOKEN
from app.core.ratelimit import TokenBucket
from embedded.processes import free_port

WINDOW_S = 24 * 3600
DELIVERY_TRIES = 5
STATUS_BATCH = 100
WABA_ID = "100000000000003"
# Approved templates: name -> language -> body with {{1}}.. placeholders.
TEMPLATES = {
    "hello_world": {"en_US": "Hello World", "en": "Hello World"},
    "campaign_message": {"en": "{{1}}", "pt_BR": "{{1}}"},
    "counter_offer": {"en": "Hi {{1}}, we have a new offer for you: {{2}}"},
}


@dataclass
class Number:
    """A customer's WhatsApp account."""

    wa_id: str
    name: str
    reads: bool = True  # reads what arrives (a read status follows delivery)
    blocked: bool = False  # blocked the business
    last_inbound: float = 0.0  # their last message to the business (the 24-hour window)
    sent: list[dict] = field(default_factory=list)  # what the business sent, in order
    unread: list[tuple[str, str | None]] = field(default_factory=list)  # delivered, not
    # read yet: (message id, its callback data)


def _error(status: int, code: int, message: str, kind: str = "OAuthException"
           ) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": code,
                                   "fbtrace_id": secrets.token_urlsafe(8)}},
                        status_code=status)


def _fill(body: str, parameters: list[str]) -> str:
    return re.sub(r"\{\{(\d+)\}\}", lambda m: parameters[int(m.group(1)) - 1], body)


class WhatsAppApi:
    """The server's state and its customers' side."""

    def __init__(self, token: str = LOCAL_TOKEN, phone_number_id: str = "100000000000001",
                 app_id: str = "100000000000002", host: str = "127.0.0.1",
                 port: int | None = None, throttle_per_s: float = 0.0,
                 latency_s: float = 0.0, status_delay_s: float = 0.05):
        self.token, self.phone_number_id, self.app_id = token, phone_number_id, app_id
        self.app_secret = secrets.token_hex(16)
        self.host = host
        self.port = port or free_port(host)
        self.throttle = TokenBucket(throttle_per_s) if throttle_per_s else None
        self.latency_s, self.status_delay_s = latency_s, status_delay_s
        self.numbers: dict[str, Number] = {}
        self.webhook: dict[str, str] = {}
        self.counter = itertools.count(1)
        self.deliveries: dict[str, int] = defaultdict(int)  # webhook answers by status
        self.lock = threading.Lock()
        self.pending_statuses: list[dict] = []
        self.arrived: list[float] = []  # when each accepted message was accepted
        self.loop: asyncio.AbstractEventLoop | None = None
        self.wake: asyncio.Event | None = None
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.app = Starlette(routes=[
            Route("/{version}/{node}/messages", self._messages, methods=["POST"]),
            Route("/{version}/{node}/subscriptions", self._subscribe, methods=["POST"])])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _authorized(self, request: Request, *tokens: str) -> bool:
        header = request.headers.get("authorization", "")
        return any(hmac.compare_digest(header.encode(), f"Bearer {t}".encode())
                   for t in tokens)

    def _wamid(self) -> str:
        return f"wamid.local{next(self.counter):012d}"

    # -- the Cloud API -------------------------------------------------------------
    async def _messages(self, request: Request) -> JSONResponse:
        if not self._authorized(request, self.token):
            return _error(401, 190, "Error validating access token: invalid token")
        if request.path_params["node"] != self.phone_number_id:
            return _error(400, 100, "Unsupported post request. Object with ID does not "
                          "exist", "GraphMethodException")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, 100, "(#100) Invalid JSON")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.throttle is not None and self.throttle.take() > 0:
            return _error(429, 130429, "(#130429) Rate limit hit")
        to = str(body.get("to") or "")
        kind = body.get("type")
        if body.get("messaging_product") != "whatsapp" or not to.isdigit():
            return _error(400, 100, "(#100) Invalid parameter")
        message: dict[str, Any] = {"to": to, "type": kind}
        callback = body.get("biz_opaque_callback_data")
        if isinstance(callback, str) and callback:
            message["callback"] = callback[:512]  # echoed in each of its statuses
        if kind == "text":
            text = (body.get("text") or {}).get("body") or ""
            if not text.strip() or len(text) > 4096:
                return _error(400, 100, "(#100) Param text['body'] is not valid")
            message["text"] = text
        elif kind == "template":
            template = body.get("template") or {}
            language = (template.get("language") or {}).get("code")
            known = TEMPLATES.get(template.get("name"), {}).get(language)
            if known is None:
                return _error(404, 132001, "(#132001) Template name does not exist in "
                              "the translation")
            values = [p.get("text", "") for c in template.get("components", [])
                      if c.get("type") == "body" for p in c.get("parameters", [])]
            if len(values) != len(set(re.findall(r"\{\{(\d+)\}\}", known))):
                return _error(400, 132000, "(#132000) Number of parameters does not "
                              "match the expected number of params")
            message |= {"template": template["name"], "text": _fill(known, values)}
        elif kind == "interactive":
            interactive = body.get("interactive") or {}
            action = interactive.get("action") or {}
            options = ([b["reply"] for b in action.get("buttons", [])]
                       if interactive.get("type") == "button" else
                       [row for s in action.get("sections", []) for row in s.get("rows", [])])
            if not options or len(options) > 10:
                return _error(400, 131009, "(#131009) Parameter value is not valid")
            message |= {"text": (interactive.get("body") or {}).get("text", ""),
                        "options": [{"id": o["id"], "title": o["title"]} for o in options],
                        "interactive": interactive.get("type")}
        else:
            return _error(400, 131051, "(#131051) Message type unknown")
        wamid = self._wamid()
        message["id"] = wamid
        self._accepted(message)
        with self.lock:
            self.arrived.append(time.time())
        return JSONResponse({"messaging_product": "whatsapp",
                             "contacts": [{"input": to, "wa_id": to}],
                             "messages": [{"id": wamid}]})

    def _accepted(self, message: dict) -> None:
        """What becomes of an accepted message: its statuses, queued for the webhook."""
        to, now, key = message["to"], time.time(), (message["id"], message.get("callback"))
        with self.lock:
            number = self.numbers.get(to)
            if number is None or number.blocked:
                self._status(key, to, "failed", 131026, "Message undeliverable")
                return
            if message["type"] != "template" and now - number.last_inbound > WINDOW_S:
                self._status(key, to, "failed", 131047, "Re-engagement message")
                return
            number.sent.append({**message, "at": now})
            self._status(key, to, "sent")
            self._status(key, to, "delivered")
            if number.reads:
                self._status(key, to, "read")
            else:
                number.unread.append(key)

    def _status(self, key: tuple[str, str | None], to: str, status: str,
                code: int | None = None, title: str = "") -> None:
        wamid, callback = key
        entry: dict[str, Any] = {"id": wamid, "status": status,
                                 "timestamp": str(int(time.time())), "recipient_id": to}
        if callback:
            entry["biz_opaque_callback_data"] = callback
        if code is not None:
            entry["errors"] = [{"code": code, "title": title, "message": title,
                                "error_data": {"details": title}}]
        self.pending_statuses.append(entry)
        if self.loop is not None and self.wake is not None:
            self.loop.call_soon_threadsafe(self.wake.set)

    async def _subscribe(self, request: Request) -> JSONResponse:
        if not self._authorized(request, f"{self.app_id}|{self.app_secret}", self.token):
            return _error(401, 190, "Error validating access token: invalid token")
        if request.path_params["node"] != self.app_id:
            return _error(400, 100, "(#100) Unsupported post request", "GraphMethodException")
        params = dict(await request.form()) | dict(request.query_params)
        callback = str(params.get("callback_url") or "")
        token = str(params.get("verify_token") or "")
        challenge = str(secrets.randbelow(10**9))
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.get(callback, params={
                    "hub.mode": "subscribe", "hub.challenge": challenge,
                    "hub.verify_token": token})
        except httpx.HTTPError:
            answer = None
        if answer is None or answer.status_code != 200 or answer.text != challenge:
            return _error(400, 2200, "(#2200) Callback verification failed: the URL "
                          "couldn't be validated", "GraphMethodException")
        self.webhook = {"url": callback, "verify_token": token}
        return JSONResponse({"success": True})

    # -- the customers' side -------------------------------------------------------
    def register(self, wa_id: str, name: str = "Customer", reads: bool = True) -> None:
        with self.lock:
            number = self.numbers.setdefault(wa_id, Number(wa_id, name))
            number.reads = reads

    def register_many(self, wa_ids: list[str], reads: bool = True) -> None:
        """Many numbers have WhatsApp (benchmarks)."""
        with self.lock:
            for wa_id in wa_ids:
                self.numbers.setdefault(wa_id, Number(wa_id, "Customer")).reads = reads

    def arrivals(self, since: float = 0.0) -> list[float]:
        with self.lock:
            return [t for t in self.arrived if t >= since]

    def say(self, wa_id: str, text: str) -> str:
        """The customer writes to the business; the message's id."""
        return self._inbound(wa_id, {"type": "text", "text": {"body": text}})

    def press(self, wa_id: str, option_id: str) -> str:
        """The customer presses the reply button (or list row) `option_id` of the last
        interactive message that offered it."""
        with self.lock:
            number = self.numbers[wa_id]
            offering = next((m for m in reversed(number.sent) if any(
                o["id"] == option_id for o in m.get("options", ()))), None)
        if offering is None:
            raise ValueError(f"no message to {wa_id} offers the option {option_id!r}")
        title = next(o["title"] for o in offering["options"] if o["id"] == option_id)
        kind = "button_reply" if offering["interactive"] == "button" else "list_reply"
        return self._inbound(wa_id, {"type": "interactive", "context": {
            "from": self.phone_number_id, "id": offering["id"]}, "interactive": {
            "type": kind, kind: {"id": option_id, "title": title}}})

    def read(self, wa_id: str) -> int:
        """The customer reads what arrived: a read status for each unread message."""
        with self.lock:
            number = self.numbers[wa_id]
            unread, number.unread = number.unread, []
            for key in unread:
                self._status(key, wa_id, "read")
        return len(unread)

    def block(self, wa_id: str) -> None:
        with self.lock:
            self.numbers.setdefault(wa_id, Number(wa_id, "Customer")).blocked = True

    def sent(self, wa_id: str | None = None) -> list[dict]:
        with self.lock:
            numbers = ([self.numbers[wa_id]] if wa_id in self.numbers else []
                       ) if wa_id is not None else list(self.numbers.values())
            return [message for number in numbers for message in number.sent]

    def sent_counts(self) -> dict[str, int]:
        with self.lock:
            return {n.wa_id: len(n.sent) for n in self.numbers.values() if n.sent}

    def _inbound(self, wa_id: str, message: dict) -> str:
        self.register(wa_id)
        with self.lock:
            number = self.numbers[wa_id]
            number.last_inbound = time.time()
        wamid = self._wamid()
        value = {"messaging_product": "whatsapp", "metadata": {
            "display_phone_number": "15550000000", "phone_number_id": self.phone_number_id},
            "contacts": [{"profile": {"name": number.name}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": wamid, "timestamp": str(int(time.time())),
                          **message}]}
        self._deliver(value)
        return wamid

    def notification(self, value: dict) -> bytes:
        return json.dumps({"object": "whatsapp_business_account", "entry": [
            {"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}]}).encode()

    def sign(self, body: bytes) -> str:
        return "sha256=" + hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()

    def deliver_raw(self, body: bytes, signature: str | None) -> int:
        """POST these bytes to the webhook with this signature header (a forgery, in
        tests); the status it answered."""
        url = self.webhook.get("url")
        if not url:
            raise RuntimeError("no webhook is subscribed")
        headers = {"content-type": "application/json"}
        if signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return httpx.post(url, content=body, headers=headers, timeout=10).status_code

    def _deliver(self, value: dict) -> None:
        if self.loop is None:
            raise RuntimeError("the server is not running")
        asyncio.run_coroutine_threadsafe(self._post(self.notification(value)),
                                         self.loop).result(30)

    async def _post(self, body: bytes) -> None:
        url = self.webhook.get("url")
        if not url:
            return  # nobody subscribed: the API keeps nothing for later
        headers = {"content-type": "application/json", "X-Hub-Signature-256": self.sign(body)}
        async with httpx.AsyncClient(timeout=30) as client:
            for attempt in range(DELIVERY_TRIES):
                try:
                    status = (await client.post(url, content=body, headers=headers)
                              ).status_code
                except httpx.HTTPError:
                    status = 0
                with self.lock:
                    self.deliveries[str(status)] += 1
                if status == 200:
                    return
                await asyncio.sleep(0.2 * 2 ** attempt)

    async def _pump_statuses(self) -> None:
        """Post queued statuses to the webhook, up to STATUS_BATCH a notification."""
        assert self.wake is not None
        while True:
            await self.wake.wait()
            self.wake.clear()
            await asyncio.sleep(self.status_delay_s)
            while True:
                with self.lock:
                    batch = self.pending_statuses[:STATUS_BATCH]
                    del self.pending_statuses[:STATUS_BATCH]
                if not batch:
                    break
                await self._post(self.notification({
                    "messaging_product": "whatsapp", "metadata": {
                        "display_phone_number": "15550000000",
                        "phone_number_id": self.phone_number_id}, "statuses": batch}))

    # -- running -------------------------------------------------------------------
    def start(self) -> str:
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        started = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.wake = asyncio.Event()
            pump = self.loop.create_task(self._pump_statuses())
            self.loop.call_soon(started.set)
            self.loop.run_until_complete(self.server.serve())
            pump.cancel()
            self.loop.run_until_complete(asyncio.gather(pump, return_exceptions=True))

        self.thread = threading.Thread(target=run, name="whatsapp-api", daemon=True)
        self.thread.start()
        started.wait(10)
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)
