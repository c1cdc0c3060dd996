"""What the Cloud API posts to our webhook, checked and read into what the chatbot and
the ledger need.

The webhook is the Cloud API's only when `X-Hub-Signature-256` is `sha256=` and the
HMAC-SHA256 of the raw body under the app's secret (`genuine`; checked before the body
is parsed). Subscribing it (`GET` with `hub.mode=subscribe`) is answered with the
challenge only for our verify token: derived from a link key like Telegram's webhook
secret, so it rotates with them and any active key's is accepted.

A notification (`object: whatsapp_business_account`) holds entries of changes; a
change's value holds customers' `messages` (text, a reply button or list row pressed)
and our messages' `statuses` (sent, delivered, read, failed with its errors). Models
read the fields we use; the rest of Meta's are allowed and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from app.core.signing_keys import LINKS, KeyRing, SigningKey

SIGNATURE_HEADER = "X-Hub-Signature-256"
TEXT, PRESS = "text", "press"
STATUSES = ("sent", "delivered", "read", "failed")


def verify_token(key: SigningKey) -> str:
    """Our verify token for the subscription handshake."""
    return hmac.new(key.secret.encode(), b"operator-comms/whatsapp-verify",
                    hashlib.sha256).hexdigest()


def verified(mode: str | None, token: str | None, keys: KeyRing) -> bool:
    """Whether a subscription handshake is ours to answer."""
    if mode != "subscribe" or not token or len(token) > 256 or not token.isascii():
        return False
    return any(hmac.compare_digest(verify_token(key).encode(), token.encode())
               for key in keys.keys if key.purpose == LINKS and key.retired_at is None)


def signature(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def genuine(body: bytes, header: str | None, app_secret: str) -> bool:
    """Whether the body is signed with the app's secret."""
    if not header or not app_secret or len(header) != 71 or not header.isascii():
        return False
    return hmac.compare_digest(signature(body, app_secret).encode(), header.encode())


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class Text(_Loose):
    body: str = Field(max_length=4096)


class Reply(_Loose):
    id: str = Field(max_length=256)
    title: str = Field(default="", max_length=256)


class Interactive(_Loose):
    type: str = Field(max_length=32)
    button_reply: Reply | None = None
    list_reply: Reply | None = None


class Message(_Loose):
    from_: str = Field(alias="from", max_length=32)
    id: str = Field(max_length=256)
    timestamp: str = Field(max_length=16)
    type: str = Field(max_length=32)
    text: Text | None = None
    interactive: Interactive | None = None


class Error(_Loose):
    code: int
    title: str = Field(default="", max_length=512)


class Status(_Loose):
    id: str = Field(max_length=256)
    status: str = Field(max_length=32)
    timestamp: str = Field(max_length=16)
    recipient_id: str = Field(default="", max_length=32)
    biz_opaque_callback_data: str | None = Field(default=None, max_length=512)
    errors: list[Error] = Field(default_factory=list, max_length=10)


class Value(_Loose):
    messaging_product: str = Field(default="whatsapp", max_length=32)
    messages: list[Message] = Field(default_factory=list, max_length=1000)
    statuses: list[Status] = Field(default_factory=list, max_length=1000)


class Change(_Loose):
    field: str = Field(max_length=64)
    value: Value


class Entry(_Loose):
    id: str = Field(max_length=64)
    changes: list[Change] = Field(default_factory=list, max_length=100)


class Notification(_Loose):
    object: str = Field(max_length=64)
    entry: list[Entry] = Field(default_factory=list, max_length=100)


@dataclass(frozen=True)
class Inbound:
    """A customer's message, as the chatbot takes it."""

    message_id: str  # the Cloud API's (a redelivery has the same)
    wa_id: str  # the customer's number, digits only: vouched for by WhatsApp
    kind: str  # text | press
    text: str  # the text, or the pressed option's number
    at: datetime


@dataclass(frozen=True)
class MessageStatus:
    """What became of one of our messages."""

    message_id: str
    status: str  # sent | delivered | read | failed
    at: datetime
    error_code: int | None = None
    error: str | None = None
    delivery_id: str | None = None  # a campaign message's (its callback data)


def _when(timestamp: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(timestamp), UTC)
    except (ValueError, OverflowError, OSError):
        return datetime.now(UTC)


def _changes(notification: Notification) -> list[Value]:
    return [change.value for entry in notification.entry for change in entry.changes
            if change.field == "messages"]


def inbound(notification: Notification) -> list[Inbound]:
    """The customers' messages the chatbot takes (a photo, a sticker: not for it)."""
    taken = []
    for value in _changes(notification):
        for message in value.messages:
            reply = message.interactive and (message.interactive.button_reply
                                             or message.interactive.list_reply)
            if message.type == "text" and message.text is not None:
                taken.append(Inbound(message.id, message.from_, TEXT,
                                     message.text.body.strip(), _when(message.timestamp)))
            elif message.type == "interactive" and reply:
                taken.append(Inbound(message.id, message.from_, PRESS, reply.id,
                                     _when(message.timestamp)))
    return taken


def statuses(notification: Notification) -> list[MessageStatus]:
    found = []
    for value in _changes(notification):
        for status in value.statuses:
            if status.status not in STATUSES:
                continue
            error = status.errors[0] if status.errors else None
            found.append(MessageStatus(status.id, status.status, _when(status.timestamp),
                                       error.code if error else None,
                                       error.title[:300] if error else None,
                                       status.biz_opaque_callback_data))
    return found
