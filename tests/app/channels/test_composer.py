"""The one mail composer: signed unsubscribe links, templates, counter-offers."""

from __future__ import annotations

from app.channels.email import composer
from app.channels.email.mailer import build_message
from app.channels.templates import compile_templates
from app.core.signing_keys import LINKS, KeyRing
from app.core.tokens import unsubscribe_url, verify_customer_token

KEYS = KeyRing.of("s3")

CUSTOMER = {"_id": "k1", "email": "ana@example.pt", "name": "Ana Silva", "plan": "Basic"}


def test_a_campaign_mail_carries_the_customers_own_signed_link() -> None:
    templates = compile_templates("Hi {{ first_name }}", "Plan {{ plan }}\n{{ unsubscribe_url }}")
    mail = composer.campaign_mail(templates, CUSTOMER, public_url="https://op.example/",
                                  key=KEYS.signing(LINKS), message_id="<m1@op.example>")
    assert (mail.to_email, mail.to_name, mail.subject) == ("ana@example.pt", "Ana Silva",
                                                           "Hi Ana")
    assert mail.unsubscribe_url.startswith("https://op.example/unsubscribe/")
    token = mail.unsubscribe_url.rsplit("/", 1)[1]
    assert verify_customer_token(token, KEYS) == "k1"
    assert verify_customer_token(token, KeyRing.of("other secret")) is None
    assert mail.text == f"Plan Basic\n{mail.unsubscribe_url}"
    data = build_message(mail, "Operator <no-reply@op.example>").data
    assert f"List-Unsubscribe: <{mail.unsubscribe_url}>".encode() in data


def test_a_counter_offer_says_where_to_accept_and_how_to_leave() -> None:
    offer = {"_id": "o1", "customer_id": "k1", "email": "ana@example.pt",
             "text": "20% off the Turbo plan"}
    mail = composer.offer_mail(offer, public_url="https://op.example", key=KEYS.signing(LINKS),
                               message_id="<o1@op.example>")
    assert mail.subject == composer.OFFER_SUBJECT
    assert "20% off the Turbo plan" in mail.text
    assert "https://op.example/chat" in mail.text and mail.unsubscribe_url in mail.text
    assert verify_customer_token(mail.unsubscribe_url.rsplit("/", 1)[1], KEYS) == "k1"


def test_the_preview_link_unsubscribes_nobody() -> None:
    link = unsubscribe_url("https://op.example/", composer.PREVIEW_TOKEN)
    assert link == "https://op.example/unsubscribe/preview"
    assert verify_customer_token(composer.PREVIEW_TOKEN, KEYS) is None


def test_the_api_names_exactly_the_registered_channels() -> None:
    from typing import get_args

    from app.campaigns.models import Channel
    from app.channels.registry import CHANNELS

    assert set(get_args(Channel)) == set(CHANNELS)
