"""Which cap a campaign keeps to, and when a customer has reached it (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.campaigns.caps import Cap, cap_for
from app.core.config import load_settings

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_a_campaign_keeps_its_own_cap_the_operators_or_none() -> None:
    capped = load_settings(frequency_cap_messages=3, frequency_cap_days=7)
    uncapped = load_settings()
    own = {"launch": {"frequency_cap": {"messages": 1, "days": 2}}}
    assert cap_for(own, uncapped) == Cap(1, 2)
    assert cap_for({"launch": {}}, capped) == Cap(3, 7)
    assert cap_for({"launch": {}}, uncapped) is None
    assert cap_for({"launch": {"frequency_cap": "off"}}, capped) is None
    assert cap_for({"kind": "transactional", "launch": {}}, capped) is None  # confirmations


def test_only_the_sends_within_the_period_count() -> None:
    cap = Cap(2, 7)
    week_ago = NOW - timedelta(days=7, seconds=1)
    assert not cap.reached([week_ago, week_ago, NOW - timedelta(days=1)], NOW)
    assert cap.reached([NOW - timedelta(days=6), NOW - timedelta(hours=1)], NOW)
    assert not cap.reached([], NOW)
    assert cap.reason == "frequency cap: 2 in 7 days"
    assert Cap(1, 0.5).reason == "frequency cap: 1 in 0.5 days"
