"""Frequency caps of campaigns: which cap a campaign's sends keep to. The operator's
cap is a setting; a campaign may set its own or turn it off; a transactional campaign
(signup confirmations) is exempt. The cap and the customers' recent sends are
`app.audience.caps` (journeys keep to the same). With a cap, a batch reads its
customers' `recent_sends` once before sending (so a customer another campaign
messaged a moment ago counts), skips those at the cap (`skipped`, "frequency cap
..."), and each flush adds its sent customers' send time in one update. Without a
cap, neither command runs.
"""

from __future__ import annotations

from typing import Any

from app.audience.caps import KEEP, Cap, note_sent, operator_cap, recent_sends
from app.core.config import Settings

__all__ = ["KEEP", "TRANSACTIONAL", "Cap", "cap_for", "note_sent", "recent_sends"]
TRANSACTIONAL = "transactional"  # a campaign kind the cap never applies to


def cap_for(campaign: dict[str, Any], settings: Settings) -> Cap | None:
    """The cap a campaign's sends keep to, if any."""
    if campaign.get("kind") == TRANSACTIONAL:
        return None
    chosen = (campaign.get("launch") or {}).get("frequency_cap")
    if chosen == "off":
        return None
    if chosen:
        return Cap(chosen["messages"], chosen["days"])
    return operator_cap(settings)
