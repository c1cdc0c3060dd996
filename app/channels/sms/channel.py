"""SMS as a channel: a campaign's text body, rendered, split into SMPP parts (GSM-7 or
UCS-2), submitted over this process's SMPP session; its parts' SMSC ids are stored so
delivery receipts find the delivery, and the SMSC's rate limit counts parts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.channels.base import (
    Channel,
    Composed,
    Outcome,
    Route,
    Sender,
    main_then_further,
    personalised,
)
from app.channels.sms.smpp import Sms, Smsc, describe, further_smscs, main_smsc, smpp_sender
from app.channels.templates import CompiledTemplates
from app.core.config import Settings
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.signing_keys import SigningKey
from app.core.statuses import AttemptOutcome
from app.core.tokens import customer_unsubscribe_url

RECEIPTS = ("delivered", "undeliverable")  # a delivery receipt's final states
INVALID_NUMBER = 0x0B  # SMPP 3.4 ESME_RINVDSTADR: invalid destination address
SLOW_DOWN = (0x58, 0x14)  # ESME_RTHROTTLED, ESME_RMSGQFUL


def sms_text(templates: CompiledTemplates, customer: dict, *, public_url: str,
             key: SigningKey) -> str:
    """An SMS campaign's text for the customer (its template is the text body; the
    unsubscribe link is there for a template that names it)."""
    link = customer_unsubscribe_url(public_url, customer["_id"], key)
    return personalised(templates, customer, link)[1].strip()


class SmsChannel(Channel):
    name = "sms"
    relay = "SMSC bind"
    receipts = RECEIPTS
    confirms = ("delivered",)

    def unreachable(self, customer: dict) -> str | None:
        if not customer.get("phone"):
            return "no phone number"
        return super().unreachable(customer)

    def address_of(self, customer: dict) -> str | None:
        return customer.get("phone")

    def hard_bounce(self, outcome: Outcome) -> str | None:
        """The SMSC says the number is not valid (ESME_RINVDSTADR)."""
        if outcome.status == AttemptOutcome.FAILED and outcome.code == INVALID_NUMBER:
            return "ESME_RINVDSTADR"
        return None

    def throttled(self, outcome: Outcome) -> bool:
        """ESME_RTHROTTLED and ESME_RMSGQFUL: the SMSC asks us to slow down."""
        return outcome.status == AttemptOutcome.RETRY and outcome.code in SLOW_DOWN

    def compose(self, templates: CompiledTemplates, customer: dict, *, runtime: Runtime,
                delivery_id: str, tracking: dict[str, bool] | None,
                options: Mapping[str, Any] | None = None) -> Composed:
        text = sms_text(templates, customer, public_url=runtime.settings.public_url,
                        key=runtime.link_key)
        message = Sms(customer["phone"], text, delivery_id)
        return Composed(message, delivery_id, units=len(message.parts[1]))

    def routes(self, settings: Settings, endpoints: Endpoints) -> list[Route]:
        """The main SMSC ("smsc", capped by `smpp_rate_limit_per_s` in parts a second),
        then each of `smpp_routes` ("smsc:<name>")."""
        return main_then_further("smsc", Route(
            "smsc", settings.smpp_weight, settings.smpp_rate_limit_per_s,
            main_smsc(settings, endpoints)), further_smscs(settings))

    async def open_sender(self, settings: Settings, route: Route) -> Sender:
        assert isinstance(route.target, Smsc)
        return smpp_sender(settings, route.target)  # the process's session to it

    def stored_fields(self) -> dict[str, Any]:
        return {"channel": self.name}

    def sent_fields(self, outcome: Outcome) -> dict[str, Any]:
        ids = getattr(outcome, "smsc_ids", ())
        return {"smsc_ids": list(ids), "segments": len(ids)} if ids else {}

    def delivered_rate(self, counts: dict[str, int]) -> float:
        """Receipted as delivered to the handset, of those sent."""
        sent = counts.get("sent", 0)
        return round(counts.get("delivered", 0) / sent, 4) if sent else 0.0

    def preview(self, text: str, customer: dict) -> dict[str, Any] | None:
        """Where it goes, and what it costs: its encoding and parts (billed per part)."""
        return {"to": customer.get("phone"), **describe(text)}
