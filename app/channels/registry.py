"""The channels by name: what a campaign's `channel` field selects."""

from __future__ import annotations

from app.channels.base import Channel
from app.channels.email.channel import EmailChannel
from app.channels.sms.channel import SmsChannel

CHANNELS: dict[str, Channel] = {channel.name: channel
                                for channel in (EmailChannel(), SmsChannel())}
DEFAULT = "email"


def channel_named(name: str | None) -> Channel:
    """The channel a campaign names (email when it names none)."""
    return CHANNELS[name or DEFAULT]
