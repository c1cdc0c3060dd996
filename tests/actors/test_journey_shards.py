"""The journey shards: a shard killed while its customers wait, restarted after their
timers fell due, fires each due step once."""

from __future__ import annotations

import time

import ray
from pymongo import MongoClient

from actors import registry
from actors.journeys import JourneyShard, shard_name
from app.core import signing_keys
from app.core.db import database
from app.core.runtime import Runtime
from app.journeys.enrollments import shard_of
from tests.utils.campaigns import generate_audience
from tests.utils.stack import Stack, unique_domain
from tests.utils.waiting import wait_until

WAITING = 1_000


def _db(stack: Stack):
    endpoints = ray.get(stack.services.endpoints.remote())
    return MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db]


async def test_a_shard_killed_while_its_customers_wait_fires_each_due_step_once_after(
        stack: Stack, api) -> None:
    shards = stack.settings.journey_shards
    domain = unique_domain("shardkill")
    tag = generate_audience(api, WAITING * shards + 600, domain)
    db = _db(stack)
    mine = [doc["_id"] for doc in db.customers.find({"tags": tag}, {"_id": 1})
            if shard_of(doc["_id"], shards) == 0][:WAITING]
    assert len(mine) == WAITING
    key, event = f"kill-{domain.split('.')[0]}", f"joined_{domain.split('-')[1][:8]}"
    assert api.post("/api/journeys", json={"key": key, "definition": {
        "name": "due during the outage", "entry": {"event": event}, "steps": [
            {"id": "pause", "type": "wait", "seconds": 4},
            {"id": "due", "type": "send", "channel": "email", "subject": "Due",
             "text": "once"}]}}).status_code == 201
    api.post(f"/api/journeys/{key}/publish").raise_for_status()
    events = {"events": [{"id": f"{key}-{cid}", "type": event, "customer_id": cid}
                         for cid in mine]}
    assert api.post("/api/journeys/events", json=events).json()["stored"] == WAITING
    wait_until(lambda: db.journey_enrollments.count_documents(
        {"key": key, "step": "pause"}) == WAITING, timeout_s=60, what="all waiting")

    ray.kill(registry.find(shard_name(0)), no_restart=True)
    wait_until(lambda: registry.find(shard_name(0)) is None, timeout_s=30)
    last_due = max(d["due_at"] for d in db.journey_enrollments.find({"key": key}))
    while time.time() < last_due.timestamp() + 1.0:  # every timer falls due meanwhile
        time.sleep(0.2)
    assert ray.get(stack.services.outbox_counts.remote(domain)) == {}  # nothing fired
    again = api.post("/api/journeys/events", json=events).json()  # and repeated events
    assert again == {"stored": 0, "repeated": WAITING}

    endpoints = await stack.services.endpoints.remote()
    keys = await signing_keys.load(database(endpoints.mongodb_uri, stack.settings.mongodb_db))
    shard = registry.get_or_create(JourneyShard, shard_name(0),
                                   Runtime.build(stack.settings, endpoints, keys), 0, shards)
    assert await shard.ready.remote()
    wait_until(lambda: len(ray.get(stack.services.outbox_counts.remote(domain))) == WAITING,
               timeout_s=120, what="every due step fired")
    time.sleep(2)  # (anything fired twice would have arrived by now)
    counts = ray.get(stack.services.outbox_counts.remote(domain))
    assert sorted(set(counts.values())) == [1] and len(counts) == WAITING
    assert db.journey_sends.count_documents({"key": key, "status": "sent"}) == WAITING
    assert db.journey_enrollments.count_documents(
        {"key": key, "status": "done", "left": "exit"}) == WAITING
    stats = wait_until(lambda: (s := ray.get(shard.stats.remote()))["fired"] >= WAITING
                       and s, timeout_s=60, what="the shard's rounds done")
    assert stats["moves"] >= WAITING, stats  # (other tests' customers may wait there too)
    view = api.get(f"/api/journeys/{key}").json()
    assert view["versions"][0]["entered"] == WAITING
    assert view["versions"][0]["left"] == {"exit": WAITING}
    assert {s["id"]: s["at"] for s in view["steps"]} == {"pause": 0, "due": 0}
