"""Quiet hours in the send path: which send windows a campaign's messages keep to (its
channel's, `COMMS_SEND_WINDOWS`, and its own launch's `send_window`; none for a
transactional campaign), and which of a batch's recipients must wait for them, and how
long (`app.core.windows`, in each customer's time zones, `app.audience.timezones`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.audience.timezones import customer_zones
from app.campaigns.caps import TRANSACTIONAL
from app.core.config import Settings
from app.core.windows import Window, wait_for


def windows_for(campaign: dict[str, Any], settings: Settings, channel: str
                ) -> tuple[Window, ...]:
    if campaign.get("kind") == TRANSACTIONAL:
        return ()
    texts = (settings.send_windows.get(channel),
             (campaign.get("launch") or {}).get("send_window"))
    return tuple(Window.parse(text) for text in texts if text)


def outside(windows: tuple[Window, ...], customers: dict[str, dict], ids: list[str],
            default_zone: str, now: datetime) -> tuple[list[str], timedelta | None]:
    """(the recipients who must wait, how long until the first of them may be sent)."""
    waiting, first = [], None
    for cid in ids:
        customer = customers.get(cid)
        if customer is None:
            continue  # gone: skipped as usual
        wait = wait_for(windows, customer_zones(customer, default_zone), now)
        if wait > timedelta(0):
            waiting.append(cid)
            first = wait if first is None else min(first, wait)
    return waiting, first
