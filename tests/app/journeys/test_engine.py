"""Journeys as pure logic: what a definition may be, and where a move takes a customer."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from app.journeys import engine
from app.journeys.definition import Journey
from app.journeys.engine import Entered, EventHeard, SendAction, SetAction, TimerFired

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def welcome() -> Journey:
    return Journey.model_validate({
        "name": "welcome", "entry": {"event": "signup_confirmed"}, "exit_on": ["plan_changed"],
        "steps": [
            {"id": "hello", "type": "send", "channel": "email", "subject": "Hi",
             "text": "Welcome https://example.com/start"},
            {"id": "clicked", "type": "wait_for", "event": "delivery.clicked",
             "timeout_s": 172_800, "on_event": "thanks", "on_timeout": "nudge"},
            {"id": "thanks", "type": "set", "attribute": "vars.engaged", "value": True,
             "next": "exit"},
            {"id": "nudge", "type": "branch", "attribute": "plan",
             "cases": [{"equals": "Turbo", "next": "exit"}]},
            {"id": "again", "type": "send", "channel": "email", "subject": "Still there?",
             "text": "..."},
        ]})


def test_entering_sends_then_waits_for_the_click_with_its_timeout() -> None:
    moved = engine.move(welcome(), {"_id": "c1"}, at=None, trigger=Entered(), now=NOW,
                        enrollment_id="e1", default_timezone="UTC")
    assert moved.actions == [SendAction("hello", "email")]
    assert (moved.step, moved.waiting_for, moved.due_at, moved.left) == (
        "clicked", "delivery.clicked", NOW + timedelta(days=2), None)


def test_the_click_and_the_timeout_take_their_own_branches() -> None:
    clicked = engine.move(welcome(), {"_id": "c1"}, at="clicked",
                          trigger=EventHeard("delivery.clicked"), now=NOW,
                          enrollment_id="e1", default_timezone="UTC")
    assert clicked.actions == [SetAction("thanks", "vars.engaged", True)]
    assert clicked.left == "exit" and clicked.passed[0] == ("clicked", "event")
    timed_out = engine.move(welcome(), {"_id": "c2", "plan": "Basic"}, at="clicked",
                            trigger=TimerFired(), now=NOW, enrollment_id="e2",
                            default_timezone="UTC")
    assert timed_out.actions == [SendAction("again", "email")]
    assert timed_out.passed == [("clicked", "timeout"), ("nudge", "else"), ("again", "done")]
    assert timed_out.left == "exit"
    turbo = engine.move(welcome(), {"_id": "c3", "plan": "Turbo"}, at="clicked",
                        trigger=TimerFired(), now=NOW, enrollment_id="e3",
                        default_timezone="UTC")
    assert turbo.actions == [] and turbo.passed[-1] == ("nudge", "case 0")


def test_a_conversion_event_ends_the_journey_wherever_the_customer_waits() -> None:
    moved = engine.move(welcome(), {"_id": "c1"}, at="clicked",
                        trigger=EventHeard("plan_changed"), now=NOW, enrollment_id="e1",
                        default_timezone="UTC")
    assert (moved.left, moved.actions) == ("converted", [])


def test_an_event_the_step_does_not_wait_for_is_refused() -> None:
    with pytest.raises(ValueError, match="waits for"):
        engine.move(welcome(), {"_id": "c1"}, at="clicked", trigger=EventHeard("other"),
                    now=NOW, enrollment_id="e1", default_timezone="UTC")


def test_a_split_follows_its_weights_and_always_gives_one_enrollment_the_same_arm() -> None:
    journey = Journey.model_validate({
        "name": "ab", "entry": {"event": "e"},
        "steps": [{"id": "ab", "type": "split", "arms": [
            {"name": "A", "weight": 3, "next": "a"}, {"name": "B", "weight": 1, "next": "b"}]},
            {"id": "a", "type": "wait", "seconds": 60},
            {"id": "b", "type": "wait", "seconds": 120}]})
    arms = Counter(engine.move(journey, {}, at=None, trigger=Entered(), now=NOW,
                               enrollment_id=f"e{n}", default_timezone="UTC").arms["ab"]
                   for n in range(4000))
    assert 2800 < arms["A"] < 3200 and arms["A"] + arms["B"] == 4000
    again = {engine.move(journey, {}, at=None, trigger=Entered(), now=NOW, enrollment_id="e7",
                         default_timezone="UTC").step for _ in range(5)}
    assert len(again) == 1


def test_wait_until_is_the_next_local_time_in_the_customers_zone() -> None:
    journey = Journey.model_validate({"name": "m", "entry": {"event": "e"}, "steps": [
        {"id": "morning", "type": "wait_until", "local_time": "09:00"}]})
    moved = engine.move(journey, {"timezone": "America/Sao_Paulo"}, at=None,
                        trigger=Entered(), now=NOW, enrollment_id="e", default_timezone="UTC")
    assert moved.due_at == datetime(2026, 12, 8, 12, 0, tzinfo=UTC)  # 09:00 at UTC-3
    early = engine.move(journey, {"timezone": "Asia/Tokyo"}, at=None, trigger=Entered(),
                        now=NOW, enrollment_id="e", default_timezone="UTC")
    assert early.due_at == datetime(2026, 12, 8, 0, 0, tzinfo=UTC)  # 09:00 at UTC+9
    timed = engine.move(journey, {}, at="morning", trigger=TimerFired(), now=NOW,
                        enrollment_id="e", default_timezone="UTC")
    assert timed.left == "exit"


def test_a_set_step_is_what_a_later_branch_reads() -> None:
    journey = Journey.model_validate({"name": "s", "entry": {"event": "e"}, "steps": [
        {"id": "mark", "type": "set", "attribute": "vars.tier", "value": "gold"},
        {"id": "which", "type": "branch", "attribute": "vars.tier",
         "cases": [{"equals": "gold", "next": "gold"}], "next": "exit"},
        {"id": "gold", "type": "wait", "seconds": 1}]})
    moved = engine.move(journey, {"vars": {"tier": "bronze"}}, at=None, trigger=Entered(),
                        now=NOW, enrollment_id="e", default_timezone="UTC")
    assert moved.step == "gold"


@pytest.mark.parametrize(("steps", "problem"), [
    ([{"id": "a", "type": "wait", "seconds": 1, "next": "nowhere"}], "not a step"),
    ([{"id": "a", "type": "wait", "seconds": 1}, {"id": "a", "type": "exit"}], "repeat"),
    ([{"id": "exit", "type": "wait", "seconds": 1}], "not a step id"),
    ([{"id": "a", "type": "set", "attribute": "vars.x", "value": 1, "next": "b"},
      {"id": "b", "type": "split", "arms": [{"name": "x", "weight": 1, "next": "a"},
                                            {"name": "y", "weight": 1}]}], "loop"),
    ([{"id": "a", "type": "set", "attribute": "email", "value": "x"}], "attribute"),
    ([{"id": "a", "type": "wait_until", "local_time": "25:00"}], "HH:MM"),
    ([{"id": "a", "type": "send", "channel": "email", "text": "t"}], "needs a subject"),
    ([{"id": "a", "type": "send", "channel": "pigeon", "text": "t"}], "channel must be"),
    ([{"id": "a", "type": "send", "channel": "whatsapp", "text": "t"}], "channel must be"),
    ([{"id": "a", "type": "send", "channel": "email", "subject": "s", "text": "t",
       "extra": 1}], "extra"),
])
def test_a_definition_that_cannot_run_is_refused_with_its_reason(steps, problem) -> None:
    with pytest.raises(ValidationError, match=problem):
        Journey.model_validate({"name": "bad", "entry": {"event": "e"}, "steps": steps})


def test_a_loop_through_a_wait_is_allowed() -> None:
    journey = Journey.model_validate({"name": "loop", "entry": {"event": "e"}, "steps": [
        {"id": "remind", "type": "send", "channel": "email", "subject": "s", "text": "t"},
        {"id": "later", "type": "wait", "seconds": 86_400, "next": "remind"}]})
    moved = engine.move(journey, {}, at="later", trigger=TimerFired(), now=NOW,
                        enrollment_id="e", default_timezone="UTC")
    assert moved.actions == [SendAction("remind", "email")] and moved.step == "later"


def test_a_send_in_quiet_hours_waits_at_its_step_for_the_window_then_sends() -> None:
    from app.core.windows import Window

    windows = {"email": (Window.parse("08:00-21:00"),)}
    night = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # 23:00 the day before in Sao Paulo
    customer = {"_id": "c1", "timezone": "America/Sao_Paulo"}
    held = engine.move(welcome(), customer, at=None, trigger=Entered(), now=night,
                       enrollment_id="e1", default_timezone="UTC", windows=windows)
    assert held.actions == [] and held.step == "hello"
    assert held.due_at == datetime(2026, 12, 7, 11, 0, tzinfo=UTC)  # 08:00 there
    sent = engine.move(welcome(), customer, at="hello", trigger=TimerFired(),
                       now=held.due_at, enrollment_id="e1", default_timezone="UTC",
                       windows=windows)
    assert sent.actions == [SendAction("hello", "email")] and sent.step == "clicked"
    daytime = engine.move(welcome(), customer, at=None, trigger=Entered(), now=NOW,
                          enrollment_id="e2", default_timezone="UTC", windows=windows)
    assert daytime.actions == [SendAction("hello", "email")]  # 09:00 there: at once
    other = engine.move(welcome(), customer, at=None, trigger=Entered(), now=night,
                        enrollment_id="e3", default_timezone="UTC",
                        windows={"sms": windows["email"]})
    assert other.actions == [SendAction("hello", "email")]  # (only SMS has quiet hours)


def test_a_move_reads_the_customer_only_when_a_step_it_may_pass_needs_them() -> None:
    from app.core.windows import Window
    from app.journeys.engine import EventHeard, TimerFired, reads_customer

    journey = Journey.model_validate({"name": "r", "entry": {"event": "e"}, "steps": [
        {"id": "w1", "type": "wait", "seconds": 60},
        {"id": "hi", "type": "send", "channel": "email", "subject": "S", "text": "T"},
        {"id": "w2", "type": "wait", "seconds": 60},
        {"id": "b", "type": "branch", "attribute": "plan",
         "cases": [{"equals": "Turbo", "next": "exit"}]},
        {"id": "w3", "type": "wait_for", "event": "x", "timeout_s": 60, "on_timeout": "exit"}]})
    night = {"email": (Window.parse("08:00-20:00"),)}
    assert reads_customer(journey, "w1", TimerFired()) is False  # a send, no quiet hours
    assert reads_customer(journey, "w1", TimerFired(), night) is True
    assert reads_customer(journey, "w2", TimerFired()) is True  # the branch
    assert reads_customer(journey, "w3", TimerFired()) is False  # timeout: leaves
    assert reads_customer(journey, "w3", EventHeard("x")) is True
