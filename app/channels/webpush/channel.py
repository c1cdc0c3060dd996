"""Web push as a channel: a campaign's text as a notification (title: the subject, or
the operator's name; body: the text) to the browser a customer subscribed from the chat
page (`webpush` on the customer: its endpoint and keys), through that browser's push
service (`app.channels.webpush.push`). The notification's open and click come back
through the service worker as the delivery's read and click (the same signed tracking
links an email's pixel and links use). A gone subscription (404, 410) is final: the
endpoint goes on the suppression list, and the customer's subscription is dropped."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.channels.base import Channel, Composed, Outcome, Route, Sender, personalised
from app.channels.email.tracking import click_url, open_url
from app.channels.templates import CompiledTemplates
from app.channels.webpush.push import GONE, Push, PushLogin, PushSender, Subscription
from app.core.config import Settings
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.statuses import AttemptOutcome
from app.core.tokens import customer_unsubscribe_url


def subscription_of(customer: dict) -> Subscription | None:
    kept = customer.get("webpush")
    if not isinstance(kept, dict) or not kept.get("endpoint"):
        return None
    return Subscription(kept["endpoint"], kept.get("p256dh", ""), kept.get("auth", ""))


def push_login(settings: Settings, endpoints: Endpoints) -> PushLogin:
    """Our key's whereabouts, and the push services a send may go to (a subscription
    kept before the operator narrowed them is refused at send time)."""
    return PushLogin(settings.webpush_contact, endpoints.mongodb_uri, settings.mongodb_db,
                     (*settings.webpush_services,
                      *([endpoints.local_push] if endpoints.local_push else [])))


def notification(title: str, body: str, *, url: str, tag: str, seen: str | None = None,
                 options: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the service worker shows (`deployments/static/push-sw.js`)."""
    payload: dict[str, Any] = {"title": title[:120], "body": body[:1000], "url": url,
                               "tag": tag}
    if seen:
        payload["seen"] = seen
    if options:
        payload["options"] = list(options)[:2]  # (a notification shows up to two actions)
    return payload


class WebPushChannel(Channel):
    name = "webpush"
    relay = "web push"
    confirms = ("read",)  # shown (the service worker says so)

    def unreachable(self, customer: dict) -> str | None:
        if subscription_of(customer) is None:
            return "no browser subscribed to notifications"
        return super().unreachable(customer)

    def address_of(self, customer: dict) -> str | None:
        found = subscription_of(customer)
        return found.endpoint if found else None

    def hard_bounce(self, outcome: Outcome) -> str | None:
        if outcome.status == AttemptOutcome.FAILED and outcome.code in GONE:
            return f"subscription gone ({outcome.code})"
        return None

    def throttled(self, outcome: Outcome) -> bool:
        return outcome.status == AttemptOutcome.RETRY and outcome.code == 429

    def compose(self, templates: CompiledTemplates, customer: dict, *, runtime: Runtime,
                delivery_id: str, tracking: dict[str, bool] | None,
                options: Mapping[str, Any] | None = None) -> Composed:
        settings = runtime.settings
        link = customer_unsubscribe_url(settings.public_url, customer["_id"], runtime.link_key)
        subject, text, _html = personalised(templates, customer, link)
        target = f"{settings.public_url.rstrip('/')}/chat/"
        subscription = subscription_of(customer)
        assert subscription is not None  # (unreachable otherwise)
        payload = notification(
            subject.strip() or settings.webpush_title, text.strip(), tag=delivery_id,
            url=click_url(settings.public_url, delivery_id, runtime.link_key, target),
            seen=open_url(settings.public_url, delivery_id, runtime.link_key))
        return Composed(Push(subscription, payload, delivery_id), delivery_id)

    def routes(self, settings: Settings, endpoints: Endpoints) -> list[Route]:
        return [Route("webpush", 1.0, settings.webpush_rate_limit_per_s,
                      push_login(settings, endpoints))]

    async def open_sender(self, settings: Settings, route: Route) -> Sender:
        assert isinstance(route.target, PushLogin)
        return PushSender(route.target)

    def stored_fields(self) -> dict[str, Any]:
        return {"channel": self.name}

    def preview(self, text: str, customer: dict) -> dict[str, Any] | None:
        return {"to": self.address_of(customer), "characters": len(text),
                "fits": len(text) <= 1000}
