"""The channels by name: what a campaign's `channel` field selects; every channel's
routes, for operators."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.channels.base import Channel
from app.channels.email.channel import EmailChannel
from app.channels.sms.channel import SmsChannel
from app.channels.telegram.channel import TelegramChannel
from app.channels.webpush.channel import WebPushChannel
from app.channels.whatsapp.channel import WhatsAppChannel, WhatsAppOptions
from app.core.config import Settings
from app.core.endpoints import Endpoints
from app.core.models import Strict

CHANNELS: dict[str, Channel] = {channel.name: channel
                                for channel in (EmailChannel(), SmsChannel(),
                                                TelegramChannel(), WhatsAppChannel(),
                                                WebPushChannel())}
DEFAULT = "email"


class ChannelOptions(Strict):
    """A campaign's options for the channels that take some, by channel name."""

    whatsapp: WhatsAppOptions | None = Field(default=None, description=(
        "the approved template for customers outside WhatsApp's 24-hour window"))


def channel_named(name: str | None) -> Channel:
    """The channel a campaign names (email when it names none)."""
    return CHANNELS[name or DEFAULT]


def routes_view(settings: Settings, endpoints: Endpoints,
                heard: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every channel's routes as configured (channel, weight, ceiling), with what the
    rate limiter heard of each (`heard`: its adapted rate and health, by key)."""
    view = {}
    for channel in CHANNELS.values():
        for route in channel.routes(settings, endpoints):
            view[route.key] = {"state": "in service", "ceiling_per_s": route.ceiling,
                               **heard.get(route.key, {}), "channel": channel.name,
                               "weight": route.weight}
    return view
