"""Offer wording and pricing from the catalogue (pure logic)."""

from __future__ import annotations

from app.core.config import load_settings
from app.marketing.catalogue import catalogue
from app.marketing.offers import offer_text


def test_default_offer_is_twenty_percent_off_turbo() -> None:
    text = offer_text(load_settings(marketing_discount_pct=20))
    assert text == ("Special offer for you: 20% off the Turbo plan, "
                    "R$ 103.92 a month instead of R$ 129.90.")


def test_offer_follows_configured_plan_and_discount() -> None:
    settings = load_settings(marketing_discount_pct=12.5, marketing_plan="Plus",
                             marketing_offer_text="{plan}: -{discount}% = {price}")
    assert offer_text(settings) == "Plus: -12.5% = 87.41"
    assert catalogue().price("Plus") == 99.90


def test_a_transient_email_failure_is_tried_again_later_a_bounded_number_of_times() -> None:
    from app.marketing import offers
    first, second = offers.email_retry_at(1, 1.0), offers.email_retry_at(2, 1.0)
    assert first is not None and second is not None and second > first
    assert offers.email_retry_at(offers.EMAIL_TRIES, 1.0) is None


async def test_offers_of_customers_who_unsubscribed_are_not_mailed(db) -> None:
    from app.marketing import offers
    await db.customers.insert_many([{"_id": "in", "email": "in@x.example", "unsubscribed": False},
                                    {"_id": "out", "email": "out@x.example", "unsubscribed": True}])
    kept = await offers.still_subscribed(db, [{"_id": "o1", "customer_id": "in"},
                                              {"_id": "o2", "customer_id": "out"},
                                              {"_id": "o3", "customer_id": None}])
    assert [o["_id"] for o in kept] == ["o1", "o3"]
