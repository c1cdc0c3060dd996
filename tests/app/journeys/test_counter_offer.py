"""The counter-offer journey as data (pure logic and the real database): its walk,
its publication from the settings, and the offer step made through the shard's
offer maker, in and out of the frequency cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.channels.base import SendOutcome
from app.core.config import load_settings
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.signing_keys import KeyRing
from app.journeys import engine, enrollments, store
from app.journeys.definition import Journey
from app.journeys.engine import Entered, EventHeard, SendAction, TimerFired
from app.journeys.sending import Sender
from app.marketing.journey import ACCEPTED, KEY, MADE_BY, counter_offer_journey

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _walk(journey: Journey, at: str | None, trigger) -> engine.Move:
    return engine.move(journey, {}, at=at, trigger=trigger, now=NOW, enrollment_id="e",
                       default_timezone="UTC")


def test_the_counter_offer_waits_the_cooldown_offers_then_waits_for_the_accept() -> None:
    settings = load_settings(marketing_cooldown_s=30, marketing_offer_ttl_s=3600)
    journey = Journey.model_validate(counter_offer_journey(settings))
    entered = _walk(journey, None, Entered())
    assert (entered.step, entered.due_at, entered.actions) == (
        "cooldown", NOW + timedelta(seconds=30), [])  # nothing at once
    offered = _walk(journey, "cooldown", TimerFired())
    assert offered.actions == [SendAction("offer", "offer")]
    assert (offered.step, offered.waiting_for, offered.due_at) == (
        "await-accept", ACCEPTED, NOW + timedelta(seconds=3600))
    assert _walk(journey, "await-accept", EventHeard(ACCEPTED)).left == "converted"
    assert _walk(journey, "await-accept", TimerFired()).left == "exit"


def test_a_night_window_does_not_hold_an_offer_in_the_customers_conversation() -> None:
    from app.core.windows import Window

    journey = Journey.model_validate(counter_offer_journey(load_settings()))
    move = engine.move(journey, {}, at="cooldown", trigger=TimerFired(), now=NOW,
                       enrollment_id="e", default_timezone="UTC",
                       windows={"email": (Window.parse("13:00-14:00"),)})
    assert move.actions == [SendAction("offer", "offer")]


async def test_published_from_the_settings_and_again_when_they_change_not_over_a_person(
        db) -> None:
    first = Journey.model_validate(counter_offer_journey(load_settings(
        marketing_cooldown_s=10)))
    assert (await store.ensure_published(db, KEY, first, MADE_BY))["version"] == 1
    assert await store.ensure_published(db, KEY, first, MADE_BY) is None  # as it is
    longer = Journey.model_validate(counter_offer_journey(load_settings(
        marketing_cooldown_s=60)))
    assert (await store.ensure_published(db, KEY, longer, MADE_BY))["version"] == 2
    assert [v["status"] for v in await store.versions(db, KEY)] == ["published", "retired"]
    await store.edit(db, KEY, first, "ana@operator.example")  # a person's version 3
    await store.publish(db, KEY)
    assert await store.ensure_published(db, KEY, longer, MADE_BY) is None
    latest = await store.latest_version(db, KEY)
    assert (latest["version"], latest["created_by"]) == (3, "ana@operator.example")


async def test_offer_steps_go_to_the_offer_maker_and_are_recorded_once(
        db, mongodb_uri: str) -> None:
    settings = load_settings(frequency_cap_messages=1, frequency_cap_days=1.0)
    runtime = Runtime.build(settings, Endpoints(mongodb_uri, "127.0.0.1", 1),
                            KeyRing.of("k"))
    journey = Journey.model_validate(counter_offer_journey(settings))
    now = datetime.now(UTC)
    await db.customers.insert_one({"_id": "c1", "email": "c1@x.example",
                                   "recent_sends": [now]})  # at the cap
    version = {"_id": f"{KEY}@1", "key": KEY, "version": 1}
    docs = [enrollments.new_enrollment(
        f"{KEY}|{member}|ev", version, member, {"_id": "ev", "session_id": f"s-{member}"},
        engine.Move(actions=[SendAction("offer", "offer")], step="await-accept"), now)
        for member in ("c1", enrollments.member_of(None, "s9"))]
    asked: list[tuple[str, str]] = []

    async def offers(_db, offered):
        asked.extend((e["session_id"], item["key"]) for e, item in offered)
        return [SendOutcome("sent")] * len(offered)

    sender = Sender(runtime, offers)
    done = await sender.make(db, docs, {f"{KEY}@1": journey})
    assert sorted(done) == sorted(d["_id"] for d in docs)
    assert sorted(s for s, _ in asked) == ["s-c1", "s-session:s9"]  # the cap does not hold it
    records = await db.journey_sends.find({"key": KEY}).to_list()
    assert {r["status"] for r in records} == {"sent"} and len(records) == 2
    assert len((await db.customers.find_one({"_id": "c1"}))["recent_sends"]) == 1
    await sender.make(db, docs, {f"{KEY}@1": journey})  # a restart's second try
    assert len(asked) == 2
    bare = await Sender(runtime).make(db, [{**docs[0], "_id": "other", "outbox": [
        {**docs[0]["outbox"][0], "key": "j|other|x|offer|1"}]}], {f"{KEY}@1": journey})
    assert bare == {}  # no maker: it stays in the outbox
