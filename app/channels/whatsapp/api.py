"""The WhatsApp Cloud API through a thin httpx client: its documented HTTP shapes, the
base URL and API version settings (a local server in local mode and tests).

`POST {base}/{version}/{phone-number-id}/messages` with the access token as a bearer
sends a text, a template (with its body parameters) or an interactive message (up to
three reply buttons, or a list of up to ten rows); the answer names the message
(`messages[0].id`, a "wamid"), whose later fate (sent, delivered, read, failed) the
Cloud API posts to our webhook (`app.channels.whatsapp.webhook`); a campaign's message
carries its delivery's id in `biz_opaque_callback_data`, which every status of it
echoes, so a status finds its delivery by `_id` with nothing written to map them.

Outcomes: accepted is sent (its wamid kept); a refused token (HTTP 401, error 190) is a
refused login; the throughput errors (130429, 131056, 80007, or HTTP 429) are "slow
down"; other 4xx answers are final (a template that does not exist, a number that is
not valid); 5xx and no answer are worth a retry. Error text never holds the token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from app.core.statuses import AttemptOutcome

SENT, RETRY, FAILED, AUTH = AttemptOutcome
LOCAL_TOKEN = "local-whatsapp-access-token"  # the embedded Cloud API's (local mode)
THROTTLED = {130429, 131056, 80007, 4, 613}  # throughput, pair rate, rate limits
TOKEN_REFUSED = {190, 102, 10}  # expired/invalid token, permission
BUTTONS, LIST_ROWS = 3, 10  # the most an interactive message offers
BUTTON_TITLE, ROW_TITLE = 20, 24  # characters


@dataclass(frozen=True)
class CloudLogin:
    """Which Cloud API, which business phone number, and the token (never printed)."""

    api_url: str
    version: str
    phone_number_id: str
    token: str = field(repr=False)

    @property
    def messages_url(self) -> str:
        return f"{self.api_url.rstrip('/')}/{self.version}/{self.phone_number_id}/messages"


@dataclass(frozen=True)
class TemplateCall:
    """An approved template by name and language, with its body's parameters."""

    name: str
    language: str
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class WhatsAppMessage:
    to: str  # the customer's WhatsApp id: their number, digits only
    reference: str  # the delivery or turn it carries (logs)
    text: str = ""
    options: tuple[str, ...] = ()  # reply buttons (or list rows); a reply names its number
    template: TemplateCall | None = None  # outside the 24-hour window, only a template
    delivery_id: str | None = None  # a campaign's: echoed in the message's statuses


@dataclass(frozen=True)
class WhatsAppOutcome:
    status: str
    code: int | None = None
    error: str | None = None
    message_id: str | None = None


def _title(label: str, most: int) -> str:
    return label if len(label) <= most else label[:most - 1] + "…"


def payload(message: WhatsAppMessage) -> dict[str, Any]:
    """The request body for the message, as the Cloud API documents it."""
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                            "to": message.to}
    if message.delivery_id is not None:  # the Cloud API puts it in every status of it
        body["biz_opaque_callback_data"] = message.delivery_id
    if message.template is not None:
        template: dict[str, Any] = {"name": message.template.name,
                                    "language": {"code": message.template.language}}
        if message.template.parameters:
            template["components"] = [{"type": "body", "parameters": [
                {"type": "text", "text": value} for value in message.template.parameters]}]
        return body | {"type": "template", "template": template}
    if not message.options:
        return body | {"type": "text", "text": {"preview_url": False, "body": message.text}}
    numbered = list(enumerate(message.options, 1))
    if len(numbered) <= BUTTONS:
        action: dict[str, Any] = {"buttons": [
            {"type": "reply", "reply": {"id": str(n), "title": _title(label, BUTTON_TITLE)}}
            for n, label in numbered]}
        kind = "button"
    else:
        action = {"button": "Choose", "sections": [{"title": "Options", "rows": [
            {"id": str(n), "title": _title(label, ROW_TITLE),
             **({"description": label[:72]} if len(label) > ROW_TITLE else {})}
            for n, label in numbered[:LIST_ROWS]]}]}
        kind = "list"
    return body | {"type": "interactive", "interactive": {
        "type": kind, "body": {"text": message.text[:1024]}, "action": action}}


def redacted(text: str, token: str) -> str:
    return text.replace(token, "<token>") if token else text


def classify(status: int, answer: dict[str, Any], token: str = "") -> WhatsAppOutcome:
    """What an answer that is not a success comes to."""
    found = answer.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    text = redacted(str(error.get("message") or f"HTTP {status}"), token)[:300]
    if status == 401 or code in TOKEN_REFUSED:
        return WhatsAppOutcome(AUTH, code or status, text)
    if status == 429 or code in THROTTLED:
        return WhatsAppOutcome(RETRY, 429, text)
    if 400 <= status < 500:
        return WhatsAppOutcome(FAILED, code or status, text)
    return WhatsAppOutcome(RETRY, code or status, text)


_clients: dict[int, httpx.AsyncClient] = {}


def client() -> httpx.AsyncClient:
    """This process's (and event loop's) pooled client."""
    key = id(asyncio.get_running_loop())
    found = _clients.get(key)
    if found is None or found.is_closed:
        found = _clients[key] = httpx.AsyncClient(
            timeout=httpx.Timeout(30, connect=10),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))
    return found


class WhatsAppSender:
    """Sends one message at a time to the Cloud API."""

    def __init__(self, login: CloudLogin):
        self.login = login

    async def send(self, message: WhatsAppMessage) -> WhatsAppOutcome:
        try:
            answer = await client().post(
                self.login.messages_url, json=payload(message),
                headers={"Authorization": f"Bearer {self.login.token}"})
        except httpx.HTTPError as exc:
            return WhatsAppOutcome(RETRY, None, redacted(f"{type(exc).__name__}: {exc}",
                                                         self.login.token)[:300])
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if answer.status_code == 200:
            messages = body.get("messages") if isinstance(body, dict) else None
            wamid = messages[0].get("id") if messages and isinstance(messages[0], dict) \
                else None
            return WhatsAppOutcome(SENT, 200, None, str(wamid) if wamid else None)
        return classify(answer.status_code, body if isinstance(body, dict) else {},
                        self.login.token)


async def subscribe_webhook(api_url: str, version: str, app_id: str, app_token: str,
                            callback_url: str, verify_token: str) -> None:
    """Point the app's WhatsApp webhook at `callback_url` (`POST /{app-id}/subscriptions`,
    with the app's token): the Cloud API checks it at once with the verification
    handshake (our `verify_token`). Raises RuntimeError (token redacted) if refused."""
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(
            f"{api_url.rstrip('/')}/{version}/{app_id}/subscriptions",
            data={"object": "whatsapp_business_account", "callback_url": callback_url,
                  "verify_token": verify_token, "fields": "messages"},
            headers={"Authorization": f"Bearer {app_token}"})
    if answer.status_code != 200:
        raise RuntimeError(redacted(f"HTTP {answer.status_code}: {answer.text[:300]}",
                                    app_token))
