"""Send windows and customers' time zones (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.audience.timezones import customer_zones
from app.campaigns.quiet_hours import outside, windows_for
from app.core.config import load_settings
from app.core.windows import Window, wait_for

SP, LISBON, TOKYO = ZoneInfo("America/Sao_Paulo"), ZoneInfo("Europe/Lisbon"), \
    ZoneInfo("Asia/Tokyo")
DAY = Window.parse("08:00-21:00")


def test_a_window_parses_holds_and_wraps_midnight() -> None:
    assert str(DAY) == "08:00-21:00"
    assert DAY.holds(time(8, 0)) and DAY.holds(time(20, 59)) and not DAY.holds(time(21, 0))
    night = Window.parse("22:00-06:00")
    assert night.holds(time(23, 30)) and night.holds(time(5, 59)) and not night.holds(time(12))
    for bad in ("8-21", "08:00-08:00", "25:00-26:00", "08:00 21:00", ""):
        with pytest.raises(ValueError):
            Window.parse(bad)


def test_how_long_a_recipient_waits_in_each_zone() -> None:
    at = datetime(2026, 12, 7, 22, 30, tzinfo=UTC)  # SP 19:30, Lisbon 22:30, Tokyo 07:30
    assert wait_for((DAY,), (SP,), at) == timedelta(0)
    assert wait_for((DAY,), (LISBON,), at) == timedelta(hours=9, minutes=30)
    assert wait_for((DAY,), (TOKYO,), at) == timedelta(minutes=30)
    # A number that may be in either zone waits until both are inside.
    assert wait_for((DAY,), (SP, TOKYO), at) == timedelta(minutes=30)
    # Two windows (the channel's, the campaign's): inside both.
    morning = Window.parse("10:00-11:00")
    assert wait_for((DAY, morning), (TOKYO,), at) == timedelta(hours=2, minutes=30)


def test_a_customers_zones_come_from_their_attribute_phone_or_the_default() -> None:
    assert customer_zones({"timezone": "Europe/Lisbon", "phone": "+81312345678"},
                          "UTC") == (LISBON,)
    assert customer_zones({"vars": {"timezone": "Asia/Tokyo"}}, "UTC") == (TOKYO,)
    assert customer_zones({"phone": "+5511987650005"}, "UTC") == (SP,)
    assert customer_zones({"timezone": "Mars/Olympus"}, "America/Sao_Paulo") == (SP,)
    assert len(customer_zones({"phone": "+351912345678"}, "UTC")) == 2  # Azores, Lisbon
    assert customer_zones({}, "Asia/Tokyo") == (TOKYO,)


def test_a_campaign_keeps_its_channels_window_and_its_own() -> None:
    settings = load_settings(send_windows={"sms": "08:00-21:00"})
    assert windows_for({"launch": {}}, settings, "sms") == (DAY,)
    assert windows_for({"launch": {}}, settings, "email") == ()
    both = windows_for({"launch": {"send_window": "10:00-11:00"}}, settings, "sms")
    assert [str(w) for w in both] == ["08:00-21:00", "10:00-11:00"]
    assert windows_for({"kind": "transactional", "launch": {"send_window": "10:00-11:00"}},
                       settings, "sms") == ()
    with pytest.raises(ValueError):
        load_settings(send_windows={"sms": "all day"})
    with pytest.raises(ValueError):
        load_settings(default_timezone="Nowhere/Else")


def test_a_batch_holds_back_only_who_is_outside() -> None:
    customers = {"sp": {"phone": "+5511987650005"}, "tk": {"phone": "+81312345678"},
                 "li": {"timezone": "Europe/Lisbon"}}
    at = datetime(2026, 12, 7, 22, 30, tzinfo=UTC)
    waiting, first = outside((DAY,), customers, ["sp", "tk", "li", "gone"], "UTC", at)
    assert waiting == ["tk", "li"] and first == timedelta(minutes=30)
