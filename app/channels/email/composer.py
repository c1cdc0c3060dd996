"""Composing an email: the one place that puts a customer, the templates, the
unsubscribe link, the tracked links (when the campaign asks) and the Message-ID
together into a `Mail`.

Used by campaign sends (signup confirmations and bounces ride the campaign path), the
marketing actor's counter-offers and the campaign preview, so every message carries
the same signed unsubscribe link and List-Unsubscribe header.
"""

from __future__ import annotations

from app.channels.base import personalised
from app.channels.email.mailer import Mail
from app.channels.email.tracking import instrument
from app.channels.templates import CompiledTemplates
from app.core.signing_keys import SigningKey
from app.core.tokens import customer_unsubscribe_url

OFFER_SUBJECT = "A special offer for you"
CODE_SUBJECT = "Your chat code"
PREVIEW_TOKEN = "preview"  # the preview's link, which unsubscribes nobody


def campaign_mail(templates: CompiledTemplates, customer: dict, *, public_url: str,
                  key: SigningKey, message_id: str, delivery_id: str | None = None,
                  tracking: dict | None = None) -> Mail:
    """The customer's email; with `tracking` (opens, clicks) and its delivery id, its
    links and open pixel are the delivery's signed ones (`app.channels.email.tracking`)."""
    link = customer_unsubscribe_url(public_url, customer["_id"], key)
    subject, text, html = personalised(templates, customer, link)
    if tracking and delivery_id and (tracking.get("opens") or tracking.get("clicks")):
        text, html = instrument(text, html, delivery_id=delivery_id,
                                opens=bool(tracking.get("opens")),
                                clicks=bool(tracking.get("clicks")),
                                public_url=public_url, key=key, keep=(link,))
    return Mail(to_email=customer["email"], to_name=customer.get("name") or "",
                subject=subject, text=text, html=html, message_id=message_id,
                unsubscribe_url=link)


def offer_mail(offer: dict, *, public_url: str, key: SigningKey, message_id: str) -> Mail:
    """A counter-offer by email: its text, where to accept it, how to unsubscribe."""
    link = customer_unsubscribe_url(public_url, offer["customer_id"], key)
    chat_url = f"{public_url.rstrip('/')}/chat"
    return Mail(to_email=offer["email"], to_name="", subject=OFFER_SUBJECT,
                text=f"{offer['text']}\n\nAccept it in the chat: {chat_url}\n\n"
                     f"Unsubscribe: {link}\n",
                message_id=message_id, unsubscribe_url=link)


def code_mail(to_email: str, text: str, *, message_id: str) -> Mail:
    """A chat verification code by email (`app.chat.verification`): no links, nothing else."""
    return Mail(to_email=to_email, to_name="", subject=CODE_SUBJECT, text=f"{text}\n",
                message_id=message_id)
