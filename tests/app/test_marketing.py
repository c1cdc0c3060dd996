"""Offer wording and pricing from the catalogue (pure logic)."""

from __future__ import annotations

from app.catalogue import catalogue
from app.config import load_settings
from app.marketing import offer_text


def test_default_offer_is_twenty_percent_off_turbo() -> None:
    text = offer_text(load_settings(marketing_discount_pct=20))
    assert text == ("Special offer for you: 20% off the Turbo plan, "
                    "R$ 103.92 a month instead of R$ 129.90.")


def test_offer_follows_configured_plan_and_discount() -> None:
    settings = load_settings(marketing_discount_pct=12.5, marketing_plan="Plus",
                             marketing_offer_text="{plan}: -{discount}% = {price}")
    assert offer_text(settings) == "Plus: -12.5% = 87.41"
    assert catalogue().price("Plus") == 99.90
