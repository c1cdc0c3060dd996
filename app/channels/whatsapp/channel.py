"""WhatsApp as a channel: a campaign's text to the customer's number through the Cloud
API (its one route, "whatsapp", capped by `whatsapp_rate_limit_per_s`).

WhatsApp allows free text only within 24 hours of the customer's last message to us
(`whatsapp.last_inbound_at` on the customer, set by the webhook); outside that window a
business may send only an approved template. So a campaign that may reach customers
outside it names its template (`WhatsAppOptions`: name, language, and the body's
parameters as templates of their own), and a customer inside the window gets the
campaign's text. A campaign without a template fails for a customer outside the window,
before anything is sent (the fallback rule then takes them on).

The number is the customer's phone, digits only (WhatsApp's id for them). Whether it
has WhatsApp, and whether the customer blocked us, the Cloud API says only later, in a
failed status (131026); statuses are applied by `app.campaigns.statuses`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from app.channels.base import Channel, Composed, Outcome, Route, Sender, personalised, variables
from app.channels.templates import CompiledTemplates, TemplateProblem, compile_text, render_text
from app.channels.whatsapp.api import (
    LOCAL_TOKEN,
    CloudLogin,
    TemplateCall,
    WhatsAppMessage,
    WhatsAppSender,
)
from app.core.config import Settings
from app.core.endpoints import Endpoints
from app.core.models import Strict
from app.core.runtime import Runtime
from app.core.statuses import AttemptOutcome
from app.core.tokens import customer_unsubscribe_url

WINDOW = timedelta(hours=24)
STATUS_FIELD = "wa_message_id"  # where a delivery keeps the Cloud API's message id
RECEIPTS = ("delivered", "undeliverable")
NOT_VALID = {131009, 131021, 100}  # parameter value not valid, recipient not valid


class WhatsAppOptions(Strict):
    """A WhatsApp campaign's approved template, for customers outside the 24-hour
    window (inside it they get the campaign's text)."""

    template: str = Field(min_length=1, max_length=512, pattern=r"^[a-z0-9_]+$",
                          description="the approved template's name")
    language: str = Field(default="en", min_length=2, max_length=15,
                          pattern=r"^[A-Za-z]{2,3}(_[A-Za-z0-9]{2,8})?$",
                          description="its language code (en, pt_BR)")
    parameters: list[str] = Field(default_factory=list, max_length=20, description=(
        "its body's {{1}}, {{2}}...: each a template of the customer's fields"))

    def __hash__(self) -> int:
        return hash((self.template, self.language, tuple(self.parameters)))


def wa_id_of(customer: dict) -> str | None:
    """The customer's WhatsApp id: their number, digits only."""
    phone = customer.get("phone")
    digits = "".join(ch for ch in phone if ch.isdigit()) if isinstance(phone, str) else ""
    return digits or None


def in_window(customer: dict, now: datetime | None = None) -> bool:
    """Whether the customer wrote to us on WhatsApp within the last 24 hours."""
    linked = customer.get("whatsapp")
    last = linked.get("last_inbound_at") if isinstance(linked, dict) else None
    if not isinstance(last, datetime):
        return False
    last = last if last.tzinfo else last.replace(tzinfo=UTC)
    return (now or datetime.now(UTC)) - last < WINDOW


def cloud_login(settings: Settings, endpoints: Endpoints) -> CloudLogin:
    token = (settings.whatsapp_access_token.get_secret_value()
             if settings.whatsapp_access_token else LOCAL_TOKEN)
    return CloudLogin(endpoints.whatsapp_api or settings.whatsapp_api_url,
                      settings.whatsapp_api_version, settings.whatsapp_phone_number_id, token)


_parameters: dict[tuple[str, ...], list[Any]] = {}


def _compiled(parameters: tuple[str, ...]) -> list[Any]:
    found = _parameters.get(parameters)
    if found is None:
        if len(_parameters) >= 64:
            _parameters.clear()
        found = _parameters[parameters] = [
            compile_text(f"whatsapp.parameters[{n}]", source)
            for n, source in enumerate(parameters)]
    return found


def template_call(options: WhatsAppOptions, values: dict[str, Any]) -> TemplateCall:
    compiled = _compiled(tuple(options.parameters))
    return TemplateCall(options.template, options.language, tuple(
        render_text(f"whatsapp.parameters[{n}]", template, values).strip() or "-"
        for n, template in enumerate(compiled)))


class WhatsAppChannel(Channel):
    name = "whatsapp"
    relay = "WhatsApp access token"
    receipts = RECEIPTS
    confirms = ("delivered", "read")
    reports_statuses = True
    options_model = WhatsAppOptions

    def unreachable(self, customer: dict) -> str | None:
        if wa_id_of(customer) is None:
            return "no phone number"
        return super().unreachable(customer)

    def address_of(self, customer: dict) -> str | None:
        """The suppression list's key: the phone number, as the customer keeps it."""
        return customer.get("phone") if wa_id_of(customer) else None

    def hard_bounce(self, outcome: Outcome) -> str | None:
        if outcome.status == AttemptOutcome.FAILED and outcome.code in NOT_VALID:
            return f"not a valid WhatsApp recipient ({outcome.code})"
        return None

    def throttled(self, outcome: Outcome) -> bool:
        return outcome.status == AttemptOutcome.RETRY and outcome.code == 429

    def compose(self, templates: CompiledTemplates, customer: dict, *, runtime: Runtime,
                delivery_id: str, tracking: dict[str, bool] | None,
                options: Mapping[str, Any] | None = None) -> Composed:
        wa_id = wa_id_of(customer)
        assert wa_id is not None  # (unreachable otherwise)
        link = customer_unsubscribe_url(runtime.settings.public_url, customer["_id"],
                                        runtime.link_key)
        if in_window(customer):
            text = personalised(templates, customer, link)[1].strip()
            return Composed(WhatsAppMessage(wa_id, delivery_id, text=text,
                                            delivery_id=delivery_id), delivery_id)
        if not options:
            raise TemplateProblem("whatsapp.template", "outside WhatsApp's 24-hour window "
                                  "only an approved template may be sent, and the "
                                  "campaign names none")
        call = template_call(WhatsAppOptions.model_validate(options),
                             variables(customer, link))
        return Composed(WhatsAppMessage(wa_id, delivery_id, template=call,
                                        delivery_id=delivery_id), delivery_id)

    def routes(self, settings: Settings, endpoints: Endpoints) -> list[Route]:
        return [Route("whatsapp", 1.0, settings.whatsapp_rate_limit_per_s,
                      cloud_login(settings, endpoints))]

    async def open_sender(self, settings: Settings, route: Route) -> Sender:
        assert isinstance(route.target, CloudLogin)
        return WhatsAppSender(route.target)

    def stored_fields(self) -> dict[str, Any]:
        return {"channel": self.name}

    def sent_fields(self, outcome: Outcome) -> dict[str, Any]:
        message_id = getattr(outcome, "message_id", None)
        return {STATUS_FIELD: message_id} if message_id is not None else {}

    def delivered_rate(self, counts: dict[str, int]) -> float:
        sent = counts.get("sent", 0)
        return round(counts.get("delivered", 0) / sent, 4) if sent else 0.0

    def preview(self, text: str, customer: dict) -> dict[str, Any] | None:
        return {"to": self.address_of(customer), "characters": len(text),
                "fits": len(text) <= 4096, "in_window": in_window(customer)}
