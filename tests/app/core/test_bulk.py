"""Writes across collections against the real MongoDB wire protocol: one `bulkWrite`
command where the server has it, one bulk write per collection where it does not, and
the same outcome either way (duplicates reported by position, other errors raised)."""

from __future__ import annotations

import uuid

import pytest
from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import PyMongoError

from app.core.bulk import Writes


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("bulkWrite", "insert", "update"):
            self.names.append(event.command_name)

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


@pytest.fixture
async def listened(mongodb_uri: str):
    commands = Commands()
    client = AsyncMongoClient(mongodb_uri, event_listeners=[commands], tz_aware=True)
    yield client[f"bulk_{uuid.uuid4().hex[:8]}"], commands
    await client.close()


@pytest.mark.parametrize("one_command", [True, False])
async def test_writes_to_three_collections_land_and_a_duplicate_is_reported_by_position(
        listened, one_command: bool) -> None:
    db, commands = listened
    await db.deliveries.insert_one({"_id": "d1", "status": "sent"})  # recorded before
    writes = Writes(db, one_command=one_command)
    fresh = writes.insert("deliveries", {"_id": "d2", "status": "sent"})
    again = writes.insert("deliveries", {"_id": "d1", "status": "failed"})
    writes.insert("webhook_messages", {"_id": "m1", "event": "delivery.status"})
    writes.update("rollups", {"_id": "r1"}, {"$inc": {"sent": 2}}, upsert=True)
    writes.update("deliveries", {"_id": "d1"}, {"$set": {"opened": True}})
    commands.names.clear()

    assert await writes.apply() == {again}
    assert fresh != again and len(writes) == 0  # applied: nothing left queued
    assert commands.names == (["bulkWrite"] if one_command else ["insert", "update",
                                                                  "insert", "update"])
    assert await db.deliveries.find_one({"_id": "d1"}) == {"_id": "d1", "status": "sent",
                                                            "opened": True}
    assert await db.deliveries.count_documents({}) == 2
    assert await db.webhook_messages.count_documents({"_id": "m1"}) == 1
    assert (await db.rollups.find_one({"_id": "r1"}))["sent"] == 2


@pytest.mark.parametrize("one_command", [True, False])
async def test_an_error_other_than_a_duplicate_raises_and_the_other_writes_land(
        listened, one_command: bool) -> None:
    db, _ = listened
    await db.campaigns.insert_one({"_id": "c1", "counts": {"sent": "many"}})
    writes = Writes(db, one_command=one_command)
    writes.update("campaigns", {"_id": "c1"}, {"$inc": {"counts.sent": 1}})  # not a number
    writes.insert("deliveries", {"_id": "d9"})
    with pytest.raises(PyMongoError):
        await writes.apply()
    assert await db.deliveries.count_documents({"_id": "d9"}) == 1  # unordered


async def test_nothing_queued_sends_nothing(listened) -> None:
    db, commands = listened
    assert await Writes(db).apply() == set()
    assert commands.names == []
