"""What the Bot API posts to our webhook, read into what the chatbot needs.

The webhook is ours only when its `X-Telegram-Bot-Api-Secret-Token` header holds the
secret we gave `setWebhook`: derived from a link key (`webhook_secret`), so it rotates
with them, and any active link key's secret is accepted (a webhook set before a
rotation keeps working until the launcher sets it again). Updates are pydantic models
of the fields we read (the rest of Telegram's fields are allowed and ignored); one is a
customer's text (a `/start <parameter>` among them), a press of an inline button, or a
change of the chat's membership (the customer blocked or unblocked the bot).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from app.core.signing_keys import LINKS, KeyRing, SigningKey

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
TEXT, PRESS, BLOCKED, UNBLOCKED = "text", "press", "blocked", "unblocked"


def webhook_secret(key: SigningKey) -> str:
    """The secret token for `setWebhook` (1-256 characters of A-Za-z0-9_-)."""
    return hmac.new(key.secret.encode(), b"operator-comms/telegram-webhook",
                    hashlib.sha256).hexdigest()


def genuine(header: str | None, keys: KeyRing) -> bool:
    """Whether the header holds the secret of one of our active link keys."""
    if not header or len(header) > 256 or not header.isascii():
        return False
    return any(hmac.compare_digest(webhook_secret(key).encode(), header.encode())
               for key in keys.keys if key.purpose == LINKS and key.retired_at is None)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class User(_Loose):
    id: int
    first_name: str = Field(default="", max_length=256)


class Chat(_Loose):
    id: int
    type: str = Field(max_length=32)


class Message(_Loose):
    message_id: int
    chat: Chat
    text: str | None = Field(default=None, max_length=4096)


class CallbackQuery(_Loose):
    id: str = Field(max_length=64)
    from_: User = Field(alias="from")
    message: Message | None = None
    data: str | None = Field(default=None, max_length=64)


class Member(_Loose):
    status: str = Field(max_length=32)


class ChatMemberUpdated(_Loose):
    chat: Chat
    new_chat_member: Member


class Update(_Loose):
    update_id: int
    message: Message | None = None
    callback_query: CallbackQuery | None = None
    my_chat_member: ChatMemberUpdated | None = None


@dataclass(frozen=True)
class Inbound:
    """One update, as the chatbot takes it."""

    update_id: int
    chat_id: int
    kind: str  # text | press | blocked | unblocked
    text: str = ""  # the text, or the pressed option's number
    callback_id: str | None = None  # a press is answered (the button stops spinning)

    @property
    def start_parameter(self) -> str | None:
        """The parameter of a `/start <parameter>` deep link, if this is one."""
        if self.kind != TEXT or not self.text.startswith("/start"):
            return None
        parts = self.text.split(maxsplit=1)
        return parts[1].strip() if len(parts) == 2 and parts[0] == "/start" else None


def inbound(update: Update) -> Inbound | None:
    """What the chatbot takes from an update (None: nothing, as a group's message)."""
    if update.message is not None and update.message.chat.type == "private":
        if update.message.text is None:
            return None  # a sticker, a photo: not for the decision tree
        return Inbound(update.update_id, update.message.chat.id, TEXT,
                       update.message.text.strip())
    query = update.callback_query
    if query is not None and query.data is not None:
        return Inbound(update.update_id, query.from_.id, PRESS, query.data, query.id)
    member = update.my_chat_member
    if member is not None and member.chat.type == "private":
        blocked = member.new_chat_member.status == "kicked"
        return Inbound(update.update_id, member.chat.id, BLOCKED if blocked else UNBLOCKED)
    return None
