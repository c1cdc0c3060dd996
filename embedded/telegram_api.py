"""A local Telegram Bot API server for local mode and tests: the documented HTTP shapes
of the methods the app calls, on 127.0.0.1.

`POST /bot<token>/<method>` (JSON or form fields) answers `{"ok": true, "result": ...}`
or `{"ok": false, "error_code": ..., "description": ...}` as api.telegram.org does:
`getMe`, `setWebhook` (url, secret_token), `deleteWebhook`, `getWebhookInfo`,
`sendMessage` (chat_id, text, reply_markup with an inline keyboard),
`answerCallbackQuery`. A wrong token is 401 Unauthorized; a chat that blocked the bot
is 403 "Forbidden: bot was blocked by the user"; an unknown chat is 400 "Bad Request:
chat not found"; above `throttle_per_s` a send is 429 with `parameters.retry_after`.

It keeps what the bot sent, per chat, and lets a test (or the console) act as a
customer: `say` (a text message; `/start <payload>` as a deep link opens the chat),
`press` (a button of an inline keyboard: a callback query), `block`. Each becomes an
Update POSTed to the webhook the bot set, with its `X-Telegram-Bot-Api-Secret-Token`
header, and is delivered again (up to 5 times, backing off) while the webhook does
not answer 200, as Telegram does.

Runs uvicorn on its own event loop in a thread (`start`, `stop`), like the SMTP sink.
"""

from __future__ import annotations

import asyncio
import itertools
import json
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

from app.channels.telegram.api import LOCAL_TOKEN
from app.core.ratelimit import TokenBucket
from embedded.processes import free_port

BOT = {"id": 100000001, "is_bot": True, "first_name": "Operator", "username": "operator_bot"}
DELIVERY_TRIES = 5


@dataclass
class Chat:
    """A customer's private chat with the bot."""

    chat_id: int
    first_name: str
    sent: list[dict] = field(default_factory=list)  # what the bot sent, in order
    blocked: bool = False
    opened: bool = False  # the customer pressed Start (a bot may not write first)


def _error(code: int, description: str, **parameters: Any) -> JSONResponse:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return JSONResponse(body, status_code=code)


class TelegramApi:
    """The server's state and its customers' side."""

    def __init__(self, token: str = LOCAL_TOKEN, host: str = "127.0.0.1",
                 port: int | None = None, throttle_per_s: float = 0.0,
                 latency_s: float = 0.0):
        self.token, self.host = token, host
        self.port = port or free_port(host)
        self.throttle = TokenBucket(throttle_per_s) if throttle_per_s else None
        self.latency_s = latency_s
        self.chats: dict[int, Chat] = {}
        self.webhook: dict[str, str] = {}
        self.update_ids = itertools.count(1)
        self.message_ids = itertools.count(1)
        self.deliveries: dict[str, int] = defaultdict(int)  # webhook answers by status
        self.arrived: list[float] = []  # when each message the bot sent was accepted
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.app = Starlette(routes=[Route("/bot{token}/{method}", self._method,
                                           methods=["GET", "POST"])])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- the Bot API ---------------------------------------------------------------
    async def _method(self, request: Request) -> JSONResponse:
        if request.path_params["token"] != self.token:
            return _error(401, "Unauthorized")
        if request.headers.get("content-type", "").startswith("application/json"):
            params = await request.json()
        else:
            params = dict(await request.form()) | dict(request.query_params)
        method = request.path_params["method"]
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return handler(params)

    def _api_getMe(self, params: dict) -> JSONResponse:  # noqa: N802
        return JSONResponse({"ok": True, "result": BOT})

    def _api_setWebhook(self, params: dict) -> JSONResponse:  # noqa: N802
        url = str(params.get("url") or "")
        if url and not url.startswith(("http://", "https://")):
            return _error(400, "Bad Request: bad webhook: an HTTP URL must be provided")
        self.webhook = {"url": url, "secret_token": str(params.get("secret_token") or "")}
        said = "Webhook was set" if url else "Webhook is already deleted"
        return JSONResponse({"ok": True, "result": True, "description": said})

    def _api_deleteWebhook(self, params: dict) -> JSONResponse:  # noqa: N802
        self.webhook = {}
        return JSONResponse({"ok": True, "result": True, "description": "Webhook was deleted"})

    def _api_getWebhookInfo(self, params: dict) -> JSONResponse:  # noqa: N802
        return JSONResponse({"ok": True, "result": {
            "url": self.webhook.get("url", ""), "has_custom_certificate": False,
            "pending_update_count": 0}})

    def _api_sendMessage(self, params: dict) -> JSONResponse:  # noqa: N802
        try:
            chat_id = int(params.get("chat_id", ""))
        except ValueError:
            return _error(400, "Bad Request: chat not found")
        text = str(params.get("text") or "")
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        if self.throttle is not None:
            wait = self.throttle.take()
            if wait > 0:
                return _error(429, f"Too Many Requests: retry after {int(wait) + 1}",
                              retry_after=int(wait) + 1)
        with self.lock:
            chat = self.chats.get(chat_id)
            if chat is None or not chat.opened:
                return _error(400, "Bad Request: chat not found")
            if chat.blocked:
                return _error(403, "Forbidden: bot was blocked by the user")
            markup = params.get("reply_markup")
            if isinstance(markup, str):
                markup = json.loads(markup)
            message = {"message_id": next(self.message_ids), "date": int(time.time()),
                       "chat": {"id": chat_id, "type": "private",
                                "first_name": chat.first_name},
                       "from": BOT, "text": text}
            if markup:
                message["reply_markup"] = markup
            chat.sent.append(message)
            self.arrived.append(time.time())
        return JSONResponse({"ok": True, "result": message})

    def _api_answerCallbackQuery(self, params: dict) -> JSONResponse:  # noqa: N802
        return JSONResponse({"ok": True, "result": True})

    # -- the customers' side -------------------------------------------------------
    def chat(self, chat_id: int, first_name: str = "Customer") -> Chat:
        with self.lock:
            return self.chats.setdefault(chat_id, Chat(chat_id, first_name))

    def say(self, chat_id: int, text: str, first_name: str = "Customer") -> int:
        """The customer sends the bot a text (`/start ...` opens the chat); the update's
        id. Delivered to the webhook from the server's loop."""
        chat = self.chat(chat_id, first_name)
        chat.opened = True
        user = {"id": chat_id, "is_bot": False, "first_name": chat.first_name}
        update_id = next(self.update_ids)
        message: dict[str, Any] = {
            "message_id": next(self.message_ids), "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": chat.first_name},
            "from": user, "text": text}
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": len(command)}]
        self._deliver({"update_id": update_id, "message": message})
        return update_id

    def press(self, chat_id: int, data: str) -> int:
        """The customer presses the button whose callback_data is `data` on the last
        message that offered it."""
        chat = self.chat(chat_id)
        with self.lock:
            offering = next((m for m in reversed(chat.sent) if any(
                button.get("callback_data") == data
                for row in m.get("reply_markup", {}).get("inline_keyboard", [])
                for button in row)), None)
        if offering is None:
            raise ValueError(f"no message in chat {chat_id} offers the button {data!r}")
        update_id = next(self.update_ids)
        user = {"id": chat_id, "is_bot": False, "first_name": chat.first_name}
        self._deliver({"update_id": update_id, "callback_query": {
            "id": str(update_id), "from": user, "chat_instance": str(chat_id),
            "message": offering, "data": data}})
        return update_id

    def block(self, chat_id: int, tell: bool = True) -> int | None:
        """The customer blocks the bot: sends to the chat are refused (403) from now on,
        and the bot hears of it (a `my_chat_member` update, status "kicked") unless
        `tell` is False (it then learns at its next send). The update's id, if told."""
        chat = self.chat(chat_id)
        chat.blocked = True
        if not tell:
            return None
        user = {"id": chat_id, "is_bot": False, "first_name": chat.first_name}
        update_id = next(self.update_ids)
        self._deliver({"update_id": update_id, "my_chat_member": {
            "chat": {"id": chat_id, "type": "private", "first_name": chat.first_name},
            "from": user, "date": int(time.time()),
            "old_chat_member": {"status": "member", "user": BOT},
            "new_chat_member": {"status": "kicked", "user": BOT,
                                "until_date": 0}}})
        return update_id

    def sent(self, chat_id: int | None = None) -> list[dict]:
        with self.lock:
            chats = [self.chats[chat_id]] if chat_id is not None else list(
                self.chats.values())
            return [message for chat in chats if chat for message in chat.sent]

    def open_chats(self, chat_ids: list[int]) -> None:
        """These customers pressed Start (benchmarks: many chats at once)."""
        with self.lock:
            for chat_id in chat_ids:
                self.chats.setdefault(chat_id, Chat(chat_id, "Customer")).opened = True

    def arrivals(self, since: float = 0.0) -> list[float]:
        with self.lock:
            return [t for t in self.arrived if t >= since]

    def sent_counts(self) -> dict[int, int]:
        with self.lock:
            return {chat_id: len(chat.sent) for chat_id, chat in self.chats.items()
                    if chat.sent}

    def deliver_raw(self, body: bytes, secret: str | None) -> int:
        """POST these bytes to the webhook with this secret header (a forgery, in
        tests); the status it answered."""
        url = self.webhook.get("url")
        if not url:
            raise RuntimeError("no webhook is set")
        headers = {"content-type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        return httpx.post(url, content=body, headers=headers, timeout=10).status_code

    def _deliver(self, update: dict) -> None:
        if self.loop is None:
            raise RuntimeError("the server is not running")
        asyncio.run_coroutine_threadsafe(self._post(update), self.loop).result(30)

    async def _post(self, update: dict) -> None:
        url, secret = self.webhook.get("url"), self.webhook.get("secret_token")
        if not url:
            raise RuntimeError("the bot set no webhook: nothing to deliver to")
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
        async with httpx.AsyncClient(timeout=30) as client:
            for attempt in range(DELIVERY_TRIES):
                try:
                    status = (await client.post(url, json=update, headers=headers)).status_code
                except httpx.HTTPError:
                    status = 0
                with self.lock:
                    self.deliveries[str(status)] += 1
                if status == 200:
                    return
                await asyncio.sleep(0.2 * 2 ** attempt)

    # -- running -------------------------------------------------------------------
    def start(self) -> str:
        config = uvicorn.Config(self.app, host=self.host, port=self.port, log_level="warning",
                                lifespan="off")
        self.server = uvicorn.Server(config)
        started = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.loop.call_soon(started.set)
            self.loop.run_until_complete(self.server.serve())

        self.thread = threading.Thread(target=run, name="telegram-api", daemon=True)
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
