"""Telegram as a channel: a campaign's text body, rendered, sent by the bot to the chat
a customer linked (`linking`); the Bot API is its one route ("telegram", capped by
`telegram_rate_limit_per_s`). A customer who blocked the bot is suppressed for
Telegram; 429 slows the route down."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.channels.base import Channel, Composed, Outcome, Route, Sender, personalised
from app.channels.telegram.api import (
    LOCAL_TOKEN,
    BotLogin,
    TelegramMessage,
    TelegramSender,
    gone,
)
from app.channels.templates import CompiledTemplates
from app.core.config import Settings
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.statuses import AttemptOutcome
from app.core.tokens import customer_unsubscribe_url


def chat_of(customer: dict) -> int | None:
    """The Telegram chat the customer linked, if any."""
    linked = customer.get("telegram")
    return linked.get("chat_id") if isinstance(linked, dict) else None


def bot_login(settings: Settings, endpoints: Endpoints) -> BotLogin:
    token = (settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token
             else LOCAL_TOKEN)
    return BotLogin(endpoints.telegram_api or settings.telegram_api_url, token)


class TelegramChannel(Channel):
    name = "telegram"
    relay = "Telegram bot token"

    def unreachable(self, customer: dict) -> str | None:
        if chat_of(customer) is None:
            return "no Telegram chat linked"
        return super().unreachable(customer)

    def address_of(self, customer: dict) -> str | None:
        chat_id = chat_of(customer)
        return str(chat_id) if chat_id is not None else None

    def hard_bounce(self, outcome: Outcome) -> str | None:
        if outcome.status != AttemptOutcome.FAILED:
            return None
        return gone(outcome.code, outcome.error)

    def throttled(self, outcome: Outcome) -> bool:
        return outcome.status == AttemptOutcome.RETRY and outcome.code == 429

    def compose(self, templates: CompiledTemplates, customer: dict, *, runtime: Runtime,
                delivery_id: str, tracking: dict[str, bool] | None,
                options: Mapping[str, Any] | None = None) -> Composed:
        link = customer_unsubscribe_url(runtime.settings.public_url, customer["_id"],
                                        runtime.link_key)
        text = personalised(templates, customer, link)[1].strip()
        chat_id = chat_of(customer)
        assert chat_id is not None  # (unreachable otherwise)
        return Composed(TelegramMessage(int(chat_id), text, delivery_id), delivery_id)

    def routes(self, settings: Settings, endpoints: Endpoints) -> list[Route]:
        return [Route("telegram", 1.0, settings.telegram_rate_limit_per_s,
                      bot_login(settings, endpoints))]

    async def open_sender(self, settings: Settings, route: Route) -> Sender:
        assert isinstance(route.target, BotLogin)
        return TelegramSender(route.target)

    def stored_fields(self) -> dict[str, Any]:
        return {"channel": self.name}

    def sent_fields(self, outcome: Outcome) -> dict[str, Any]:
        message_id = getattr(outcome, "message_id", None)
        return {"telegram_message_id": message_id} if message_id is not None else {}

    def preview(self, text: str, customer: dict) -> dict[str, Any] | None:
        return {"to": self.address_of(customer), "characters": len(text),
                "fits": len(text) <= 4096}
