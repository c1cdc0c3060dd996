"""Frequency caps through the real proxy: at most N campaign messages per customer in a
rolling period, counted across campaigns and channels; a campaign can turn the cap off."""

from __future__ import annotations

import httpx

from tests.deployments.test_campaigns import mongo, sink_counts
from tests.deployments.test_sms import _audience
from tests.utils.campaigns import finished, import_audience, launch, wait_for
from tests.utils.stack import Stack

CAP = {"messages": 2, "days": 7}


def _campaign(api: httpx.Client, tag: str, channel: str, cap) -> dict:
    body = {"name": f"capped {channel}", "channel": channel, "audience": {"tag": tag},
            "body_text": "Hello {{ first_name }}"}
    if channel == "email":
        body["subject"] = "Hello"
    created = api.post("/api/campaigns", json=body)
    assert created.status_code == 201, created.text
    launch(api, created.json()["id"], workers=1, batch_size=10, frequency_cap=cap)
    return wait_for(api, created.json()["id"], finished)


def test_the_cap_counts_across_campaigns_and_channels(stack: Stack, api) -> None:
    tag, [number] = _audience(api, 1)  # c0@<tag>, with a phone
    first = _campaign(api, tag, "email", CAP)
    second = _campaign(api, tag, "sms", CAP)  # two messages now, on two channels
    assert first["counts"]["sent"] == second["counts"]["sent"] == 1
    import_audience(api, [f"late@{tag}"], tag=tag)  # messaged by neither yet

    third = _campaign(api, tag, "email", CAP)
    assert (third["counts"]["sent"], third["counts"]["skipped"]) == (1, 1)
    db = mongo(stack)
    customer = db.customers.find_one({"email": f"c0@{tag}"})
    capped = db.deliveries.find_one({"campaign_id": third["id"],
                                     "customer_id": customer["_id"]})
    assert (capped["status"], capped["last_error"]) == ("skipped",
                                                        "frequency cap: 2 in 7 days")
    assert len(customer["recent_sends"]) == 2
    assert sink_counts(stack, tag) == {f"c0@{tag}": 1, f"late@{tag}": 1}

    fourth = _campaign(api, tag, "email", "off")  # this campaign turns the cap off
    assert (fourth["counts"]["sent"], fourth["counts"]["skipped"]) == (2, 0)
    assert fourth["launch"]["frequency_cap"] == "off"
    bad = api.post(f"/api/campaigns/{third['id']}/launch",
                   json={"frequency_cap": {"messages": 0, "days": 7}})
    assert bad.status_code == 422 and "frequency_cap" in bad.text
