"""The counter-offer as a journey, shipped as data: a refusal in the chat
(`offer_refused`) enters it; it waits `COMMS_MARKETING_COOLDOWN_S`, makes the offer
(the inbox, the conversation's channel, email, push: `app.journeys.definition.Offer`),
and waits `COMMS_MARKETING_OFFER_TTL_S` for the customer to accept it
(`counter_offer_accepted`, a conversion) before the customer leaves.

The launcher publishes it from the settings (`deployments.cluster`); an operator may
edit it like any journey, and then their version stands.
"""

from __future__ import annotations

from typing import Any

from app.core.config import Settings

KEY = "counter-offer"
REFUSED, ACCEPTED = "offer_refused", "counter_offer_accepted"
MADE_BY = "settings"  # the versions made from the settings, not by a person
YEAR_S = 366 * 86_400.0  # (a journey's longest wait)


def counter_offer_journey(settings: Settings) -> dict[str, Any]:
    """The journey's definition for these settings."""
    return {
        "name": "Counter-offer after a refusal",
        "entry": {"event": REFUSED},
        "reentry": True,  # each refusal its own time through (the offer window decides)
        "exit_on": [ACCEPTED],
        "steps": [
            {"id": "cooldown", "type": "wait",
             "seconds": min(settings.marketing_cooldown_s, YEAR_S)},
            {"id": "offer", "type": "offer"},
            {"id": "await-accept", "type": "wait_for", "event": ACCEPTED,
             "timeout_s": min(settings.marketing_offer_ttl_s, YEAR_S), "on_timeout": "exit"},
        ],
    }
