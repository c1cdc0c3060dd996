"""Email as a channel: a campaign's message is a `Mail` built into RFC 5322 bytes with a
Message-ID derived from its delivery, sent over this process's pooled SMTP connections."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from app.channels.base import Channel, Composed, Outcome, Route, Sender, main_then_further
from app.channels.email.composer import campaign_mail
from app.channels.email.mailer import (
    SmtpRelay,
    build_message,
    further_relays,
    main_relay,
    message_id,
    sender_pool,
)
from app.channels.templates import CompiledTemplates
from app.core.config import Settings
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.statuses import AttemptOutcome

ENHANCED = re.compile(r"\s*([245]\.\d{1,3}\.\d{1,3})\b")  # RFC 3463, first in the text
HARD_STATUS = re.compile(r"5\.1\.\d+$|5\.2\.1$")
SLOW_DOWN = re.compile(r"throttl|rate limit|too many|slow down", re.IGNORECASE)


def dead_mailbox(status: str | None) -> bool:
    """Whether an RFC 3463 status says the address takes no mail (5.1.x: bad mailbox or
    domain; 5.2.1: mailbox disabled), at send time or in a DSN."""
    return bool(status and HARD_STATUS.match(status.strip()))


class EmailChannel(Channel):
    confirms = ("read",)  # an open, where opens are tracked
    name = "email"
    relay = "SMTP authentication"
    takes_html = True
    needs_subject = True

    def unreachable(self, customer: dict) -> str | None:
        if not customer.get("email"):
            return "no email address"
        return super().unreachable(customer)

    def address_of(self, customer: dict) -> str | None:
        email = customer.get("email")
        return email.strip().lower() if email else None

    def hard_bounce(self, outcome: Outcome) -> str | None:
        """RFC 3463 5.1.x (bad mailbox or domain) and 5.2.1 (mailbox disabled): the
        address is dead. Other 5xx (policy, content, size) say nothing of the address."""
        if outcome.status != AttemptOutcome.FAILED:
            return None
        found = ENHANCED.match(outcome.error or "")
        return found.group(1) if found and dead_mailbox(found.group(1)) else None

    def throttled(self, outcome: Outcome) -> bool:
        """421 and 454 (SES's "Throttling failure"); 450-452 when their RFC 3463 status
        or text is about rate or load (4.7.x policy, 4.3.2 not accepting, 4.4.5
        congestion): not a mailbox's own trouble, such as greylisting's 451 4.3.0."""
        if outcome.status != AttemptOutcome.RETRY or outcome.code is None:
            return False
        if outcome.code in (421, 454):
            return True
        if outcome.code not in (450, 451, 452):
            return False
        found = ENHANCED.match(outcome.error or "")
        status = found.group(1) if found else ""
        return status.startswith("4.7.") or status in ("4.3.2", "4.4.5") or bool(
            SLOW_DOWN.search(outcome.error or ""))

    def compose(self, templates: CompiledTemplates, customer: dict, *, runtime: Runtime,
                delivery_id: str, tracking: dict[str, bool] | None,
                options: Mapping[str, Any] | None = None) -> Composed:
        settings = runtime.settings
        mid = message_id(delivery_id, settings.mail_from)
        mail = campaign_mail(templates, customer, public_url=settings.public_url,
                             key=runtime.link_key, message_id=mid,
                             delivery_id=delivery_id, tracking=tracking)
        return Composed(build_message(mail, settings.mail_from), mid)

    def routes(self, settings: Settings, endpoints: Endpoints) -> list[Route]:
        """The main relay ("relay", capped by `relay_rate_limit_per_s`), then each of
        `smtp_routes` ("relay:<name>")."""
        return main_then_further("relay", Route(
            "relay", settings.smtp_weight, settings.relay_rate_limit_per_s,
            main_relay(settings, endpoints)), further_relays(settings))

    async def open_sender(self, settings: Settings, route: Route) -> Sender:
        assert isinstance(route.target, SmtpRelay)
        return (await sender_pool().take(route.target, 1))[0]

    def close_senders(self, route: Route, senders: list[Sender]) -> None:
        sender_pool().give(senders)  # type: ignore[arg-type]
