"""The channels behind the one interface the send path calls: what each composes, who it
cannot reach, what a sent outcome adds to the delivery, and its relay's limit."""

from __future__ import annotations

from typing import get_args

from app.campaigns.models import Channel as CampaignChannel
from app.channels.registry import CHANNELS, channel_named
from app.channels.routing import route_limits
from app.channels.sms.smpp import SmsOutcome
from app.channels.templates import compile_templates
from app.core.config import load_settings
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.signing_keys import KeyRing
from app.core.tokens import verify_customer_token

SETTINGS = load_settings(public_url="https://op.example", relay_rate_limit_per_s=40,
                         smpp_rate_limit_per_s=5)
KEYS = KeyRing.of("s3")
RUNTIME = Runtime(SETTINGS, Endpoints("mongodb://x", "127.0.0.1", 25), KEYS)
CUSTOMER = {"_id": "k1", "email": "ana@example.pt", "name": "Ana Silva", "plan": "Basic",
            "phone": "+5511987650001"}
TEMPLATES = compile_templates("Hi {{ first_name }}", "Plan {{ plan }} {{ unsubscribe_url }}")


def test_email_composes_a_message_whose_id_follows_the_delivery() -> None:
    email = channel_named(None)
    assert email.name == "email"
    first = email.compose(TEMPLATES, CUSTOMER, runtime=RUNTIME, delivery_id="c1:k1",
                          tracking=None)
    again = email.compose(TEMPLATES, CUSTOMER, runtime=RUNTIME, delivery_id="c1:k1",
                          tracking=None)
    other = email.compose(TEMPLATES, CUSTOMER, runtime=RUNTIME, delivery_id="c1:k2",
                          tracking=None)
    assert first.message_id == again.message_id != other.message_id
    assert first.units == 1
    data = first.message.data.decode()
    assert "Subject: Hi Ana" in data and f"Message-ID: {first.message_id}" in data
    link = data.split("Plan Basic ", 1)[1].split()[0]
    assert verify_customer_token(link.rsplit("/", 1)[1], KEYS) == "k1"


def test_sms_composes_parts_and_counts_them_for_the_smsc_rate() -> None:
    sms = channel_named("sms")
    short = sms.compose(TEMPLATES, CUSTOMER, runtime=RUNTIME, delivery_id="c1:k1",
                        tracking=None)
    assert short.message_id == "c1:k1" and short.message.to == "+5511987650001"
    assert short.message.text.startswith("Plan Basic https://op.example/unsubscribe/")
    assert short.units == 1
    long = compile_templates("", "x" * 400)
    assert sms.compose(long, CUSTOMER, runtime=RUNTIME, delivery_id="c1:k1",
                       tracking=None).units == 3  # 153 GSM-7 characters a part


def test_who_a_channel_cannot_reach() -> None:
    email, sms = channel_named("email"), channel_named("sms")
    assert email.unreachable(CUSTOMER) is None and sms.unreachable(CUSTOMER) is None
    assert sms.unreachable({**CUSTOMER, "phone": None}) == "no phone number"
    stopped = {**CUSTOMER, "opted_out": ["sms"]}  # texted STOP
    assert sms.unreachable(stopped) == "suppressed for sms"
    assert email.unreachable(stopped) is None


def test_what_a_channel_adds_to_its_deliveries_and_its_routes() -> None:
    email, sms = channel_named("email"), channel_named("sms")
    assert email.stored_fields() == {} and sms.stored_fields() == {"channel": "sms"}
    sent = SmsOutcome("sent", 0, None, ("id1", "id2"))
    assert sms.sent_fields(sent) == {"smsc_ids": ["id1", "id2"], "segments": 2}
    endpoints = RUNTIME.endpoints
    assert route_limits(email.routes(SETTINGS, endpoints)) == {"relay": 40}
    assert route_limits(sms.routes(SETTINGS, endpoints)) == {"smsc": 5}
    assert route_limits(email.routes(load_settings(), endpoints)) == {}
    further = load_settings(
        smtp_weight=3, smtp_routes=[{"name": "backup", "host": "mx2.example", "port": 25,
                                     "password": "pw-of-backup", "rate_limit_per_s": 9}],
        smpp_routes=[{"name": "second", "host": "smsc2.example", "weight": 2}])
    relays = email.routes(further, endpoints)
    assert [(r.key, r.weight, r.ceiling) for r in relays] == [
        ("relay", 3.0, None), ("relay:backup", 1.0, 9.0)]
    assert relays[1].target.host == "mx2.example" and relays[1].target.port == 25
    assert "pw-of-backup" not in repr(relays)  # a route's login never printed
    smscs = sms.routes(further, endpoints)
    assert [(r.key, r.weight) for r in smscs] == [("smsc", 1.0), ("smsc:second", 2.0)]
    assert relays[0].target.host == "127.0.0.1"  # the main one: the resolved endpoints


def test_delivered_rates_and_previews_by_channel() -> None:
    counts = {"sent": 8, "failed": 1, "dead": 1, "delivered": 6}
    assert channel_named("email").delivered_rate(counts) == 0.8  # accepted, of attempted
    assert channel_named("sms").delivered_rate(counts) == 0.75  # receipted, of sent
    assert channel_named("email").preview("hi", CUSTOMER) is None
    assert channel_named("sms").preview("hi", CUSTOMER) == {
        "to": "+5511987650001", "encoding": "GSM-7", "segments": 1, "characters": 2}
    linked = {**CUSTOMER, "telegram": {"chat_id": "777"}}
    assert channel_named("telegram").preview("hi", linked) == {"to": "777", "characters": 2,
                                                               "fits": True}
    assert channel_named("telegram").unreachable(CUSTOMER) == "no Telegram chat linked"
    assert channel_named("telegram").unreachable(linked) is None
    assert set(CHANNELS) == set(get_args(CampaignChannel)) == {
        "email", "sms", "telegram", "whatsapp", "webpush"}
