"""Quiet hours through the real app: a campaign launched before its recipients' send
window opens sends nothing and holds no task while they wait, then sends each of them
once when the window opens (the runner's heap holds the time; nothing polls)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from tests.deployments.test_campaigns import sink_counts
from tests.utils.campaigns import create_campaign, finished, import_audience, launch, wait_for
from tests.utils.stack import Stack, unique_domain


def test_a_campaign_waits_for_the_window_then_sends_everyone_once(stack: Stack, api) -> None:
    domain = unique_domain("quiet")
    people = [f"p{n}@{domain}" for n in range(3)]  # no phone: the default time zone
    import_audience(api, people, tag=domain)
    zone = ZoneInfo(stack.settings.default_timezone)
    local = datetime.now(zone)
    # The next minute that starts at least 15 s from now (windows are whole minutes).
    opens = (local + timedelta(seconds=75)).replace(second=0, microsecond=0)
    window = f"{opens:%H:%M}-{opens + timedelta(hours=2):%H:%M}"
    campaign_id = create_campaign(api, domain)
    bad = api.post(f"/api/campaigns/{campaign_id}/launch", json={"send_window": "9-17"})
    assert bad.status_code == 422 and "send_window" in bad.text
    launch(api, campaign_id, workers=2, batch_size=2, send_window=window)

    time.sleep(5)  # the first batch ran, found everyone outside, and closed
    view = api.get(f"/api/campaigns/{campaign_id}").json()
    assert view["status"] == "running" and view["launch"]["send_window"] == window
    assert (view["counts"]["sent"], view["counts"]["pending"]) == (0, 3)
    assert view["tasks_in_flight"] == 0  # waiting holds no worker
    assert sink_counts(stack, domain) == {}

    view = wait_for(api, campaign_id, finished, timeout_s=240)
    assert (view["status"], view["counts"]["sent"]) == ("completed", 3)
    assert sink_counts(stack, domain) == {person: 1 for person in people}
    arrivals = [datetime.fromisoformat(m["received_at"]) for m in api.get(
        "/api/outbox", params={"to": people[0]}).json()["messages"]]
    assert arrivals and all(at >= opens for at in arrivals)


def test_a_scheduled_campaign_sends_from_its_start_time(stack: Stack, api) -> None:
    domain = unique_domain("scheduled")
    people = [f"s{n}@{domain}" for n in range(2)]
    import_audience(api, people, tag=domain)
    campaign_id = create_campaign(api, domain)
    past = datetime.now(ZoneInfo("UTC")) - timedelta(minutes=1)
    refused = api.post(f"/api/campaigns/{campaign_id}/launch",
                       json={"start_at": past.isoformat()})
    assert refused.status_code == 422 and "body.start_at" in refused.text
    naive = api.post(f"/api/campaigns/{campaign_id}/launch",
                     json={"start_at": "2031-01-01T10:00:00"})  # no offset: ambiguous
    assert naive.status_code == 422 and "start_at" in naive.text
    start = (datetime.now(ZoneInfo("America/Sao_Paulo")) + timedelta(seconds=20)).replace(
        microsecond=0)
    launch(api, campaign_id, workers=1, start_at=start.isoformat())

    time.sleep(5)
    view = api.get(f"/api/campaigns/{campaign_id}").json()
    assert view["status"] == "running" and view["counts"]["sent"] == 0
    assert datetime.fromisoformat(view["launch"]["start_at"]) == start
    assert sink_counts(stack, domain) == {}
    view = wait_for(api, campaign_id, finished)
    assert view["counts"]["sent"] == 2
    arrivals = [datetime.fromisoformat(m["received_at"]) for person in people
                for m in api.get("/api/outbox", params={"to": person}).json()["messages"]]
    assert len(arrivals) == 2 and all(at >= start for at in arrivals)
