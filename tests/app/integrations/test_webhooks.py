"""Webhook records against the session's real MongoDB: who hears an event, keyed events
stored once, the retry schedule to dead, disabling a failing endpoint, replay. And
the signature, checked with the published Standard Webhooks library."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from app.core.db import database
from app.core.statuses import WebhookStatus
from app.integrations import webhooks


def test_headers_verify_with_the_standard_library() -> None:
    secret = webhooks.new_secret()
    message = {"type": "campaign.started", "created_at": datetime(2026, 11, 23, tzinfo=UTC),
               "data": {"campaign_id": "c1", "ünïcode": "ok"}}
    body = webhooks.body_of(message)
    assert body == webhooks.body_of(dict(message))  # the same bytes on every attempt
    headers = webhooks.signed_headers(secret, "msg_1", datetime.now(UTC), body)
    assert Webhook(secret).verify(body, headers)["data"]["campaign_id"] == "c1"
    assert headers["webhook-signature"].startswith("v1,")
    with pytest.raises(Exception, match="signature"):
        Webhook(webhooks.new_secret()).verify(body, headers)


def test_urls_lose_their_credentials_before_the_audit_log() -> None:
    assert webhooks.url_for_log("https://bob:pw@crm.example:8443/hooks?token=s3cret#x") == (
        "https://crm.example:8443/hooks")
    assert webhooks.url_for_log("http://127.0.0.1/h") == "http://127.0.0.1/h"


def test_the_schedule_then_dead() -> None:
    schedule = [5, 300, 1800]
    assert [webhooks.next_attempt_in(schedule, n) for n in (1, 2, 3, 4)] == [5, 300, 1800,
                                                                            None]


async def _endpoint(db, events: list[str]) -> dict:
    return await webhooks.create_endpoint(db, url="http://127.0.0.1:9/h", events=events,
                                          description=None, ordered=False, max_in_flight=2,
                                          created_by="test")


async def test_only_listeners_get_events_and_a_keyed_event_is_stored_once(db) -> None:
    listeners = webhooks.Subscriptions(ttl_s=0)
    assert await webhooks.emit(db, "campaign.started", {"x": 1}, listeners=listeners) == 0
    assert await db.webhook_messages.count_documents({}) == 0
    crm = await _endpoint(db, ["campaign.started", "offer.sent"])
    await _endpoint(db, ["offer.sent"])
    assert await webhooks.emit(db, "campaign.started", {"x": 1}, listeners=listeners) == 1
    assert await webhooks.emit(db, "offer.sent", {"x": 2}, key="k1", listeners=listeners) == 2
    assert await webhooks.emit(db, "offer.sent", {"x": 2}, key="k1", listeners=listeners) == 0
    assert await db.webhook_messages.count_documents({"type": "offer.sent"}) == 2
    await webhooks.change_endpoint(db, crm["_id"], {"enabled": False})
    assert await webhooks.emit(db, "campaign.started", {"x": 3}, listeners=listeners) == 0


async def test_failures_walk_the_schedule_then_die_disable_and_replay(db) -> None:
    endpoint = await _endpoint(db, ["campaign.started"])
    await webhooks.emit(db, "campaign.started", {"x": 1},
                        listeners=webhooks.Subscriptions(ttl_s=0))
    [message] = await webhooks.due_messages(db)
    schedule = [0.0, 0.0]
    for expected in (WebhookStatus.PENDING, WebhookStatus.PENDING, WebhookStatus.DEAD):
        status, _ = await webhooks.record_failure(db, message, 503, "HTTP 503", schedule,
                                                  disable_after_s=0)
        assert status == expected
        message = await db.webhook_messages.find_one({"_id": message["_id"]})
    assert message["attempts"] == 3 and len(message["history"]) == 3
    stored = await webhooks.get_endpoint(db, endpoint["_id"])
    assert stored["enabled"] is False and "HTTP 503" in stored["disabled_reason"]
    assert await webhooks.due_messages(db) == []

    assert await webhooks.replay_dead(db, endpoint["_id"]) == 1
    [again] = await webhooks.due_messages(db)
    assert again["_id"] == message["_id"] and again["attempts"] == 0
    assert (await webhooks.get_endpoint(db, endpoint["_id"]))["enabled"] is True
    await webhooks.record_successes(db, [(again, 204, 3.0, datetime.now(UTC))],
                                    [endpoint["_id"]])
    done = await db.webhook_messages.find_one({"_id": message["_id"]})
    assert done["status"] == WebhookStatus.DELIVERED and done["attempts"] == 1
    assert (await webhooks.get_endpoint(db, endpoint["_id"]))["failing_since"] is None


async def test_listeners_are_known_per_database(db, mongodb_uri: str) -> None:
    other = database(mongodb_uri, f"hooks_{uuid.uuid4().hex[:8]}")
    listening = await _endpoint(db, ["campaign.started"])
    listeners = webhooks.Subscriptions(ttl_s=3600)  # fresh for an hour, but per database
    assert await listeners.endpoints_for(db, "campaign.started") == [listening["_id"]]
    assert await listeners.endpoints_for(other, "campaign.started") == []
