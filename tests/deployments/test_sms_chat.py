"""The chatbot by SMS end to end: a customer's messages into the embedded SMSC (the
local-mode API), the SMS gateway's answers out of it, the operator flow, a refusal's
counter-offer by SMS after the cooldown, and its acceptance."""

from __future__ import annotations

import random
import time

import httpx
import ray
from pymongo import MongoClient

from tests.deployments.test_sms import _audience
from tests.utils.campaigns import finished, launch, wait_for
from tests.utils.stack import Stack


def _texts_to(stack: Stack, digits: str) -> list[str]:
    messages = ray.get(stack.services.sms_outbox.remote(digits, 1000))["messages"]
    return [m["text"] for m in reversed(messages)]  # oldest first


def _next_text(stack: Stack, digits: str, seen: int, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while len(texts := _texts_to(stack, digits)) <= seen:
        assert time.monotonic() < deadline, f"no SMS to {digits} after {texts}"
        time.sleep(0.1)
    return texts[seen]


def test_an_sms_conversation_runs_the_flow_and_a_refusal_gets_a_counter_offer_by_sms(
        stack: Stack, api: httpx.Client) -> None:
    number = f"+55119{random.randrange(10**7, 10**8)}"
    digits = number[1:]

    def say(text: str) -> None:
        answer = api.post("/api/sms/simulate-inbound", json={"source": number, "text": text})
        assert answer.status_code == 202, answer.text
        assert answer.json()["source"] == number

    say("1")  # answers the greeting's "Are you already a client?"
    assert _next_text(stack, digits, 0).startswith(
        "Good to see you again! Would you like an upgrade? Reply 1 for Yes, 2 for No.")
    say("1")
    assert "Turbo plan" in _next_text(stack, digits, 1)
    say("2")
    assert _next_text(stack, digits, 2).startswith("No problem, thank you for your time!")
    offer = _next_text(stack, digits, 3, timeout=60)  # after the 1 s cooldown
    assert offer.startswith("Special offer for you:") and "Reply 1 for Accept" in offer

    sessions = api.get("/api/chat/sessions").json()["sessions"]
    [mine] = [s for s in sessions if (s.get("contact") or {}).get("phone") == number]
    assert mine["channel"] == "sms" and mine["node"] == "counter_offer"
    say("accept")
    assert _next_text(stack, digits, 4).startswith("Offer accepted!")
    endpoints = ray.get(stack.services.endpoints.remote())
    offers = MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db].offers
    deadline = time.monotonic() + 30
    while (found := offers.find_one({"session_id": mine["id"]}))["status"] != "accepted":
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    assert found["sms_to"] == number


def test_an_inbound_sms_from_something_not_a_number_is_refused(api: httpx.Client) -> None:
    bad = api.post("/api/sms/simulate-inbound", json={"source": "hello", "text": "1"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "body.source"


def test_stop_by_sms_suppresses_the_number_for_the_next_sms_campaign(
        stack: Stack, api: httpx.Client) -> None:
    tag, numbers = _audience(api, 6)  # n = 1, 2, 3 behave oddly at the SMSC; 5 is plain
    stopper = numbers[5]
    digits = stopper[1:]

    def say(text: str) -> None:
        answer = api.post("/api/sms/simulate-inbound", json={"source": stopper, "text": text})
        assert answer.status_code == 202, answer.text

    say("Parar")  # any stop word, any case
    assert _next_text(stack, digits, 0) == stack.settings.sms_stop_reply
    say("STOP")  # confirmed once: the next answer is HELP's, not a second confirmation
    say("help")
    assert _next_text(stack, digits, 1) == stack.settings.sms_help_text

    created = api.post("/api/campaigns", json={"name": "after stop", "channel": "sms",
                                               "body_text": "Hello {{ first_name }}",
                                               "audience": {"tag": tag}})
    campaign_id = created.json()["id"]
    launch(api, campaign_id, workers=2, batch_size=10)
    view = wait_for(api, campaign_id, finished)
    assert view["counts"]["skipped"] == 1
    texts = _texts_to(stack, digits)
    assert len(texts) == 2 and not any(t.startswith("Hello") for t in texts)
    assert _texts_to(stack, numbers[4][1:]) == ["Hello C4"]  # the others got theirs

    # On the one list: the STOP, and the number the SMSC called invalid (…0001).
    listed = {e["address"]: e for e in api.get(
        "/api/suppressions", params={"channel": "sms"}).json()["suppressions"]}
    assert listed[stopper]["reason"] == "stop"
    assert (listed[numbers[1]]["reason"], listed[numbers[1]]["detail"]["status"]) == (
        "hard-bounce", "ESME_RINVDSTADR")
    # START is the customer's own opt-in: it lifts theirs (confirmed once).
    say("start")
    assert _next_text(stack, digits, 2) == stack.settings.sms_start_reply
    again = api.post("/api/campaigns", json={"name": "after start", "channel": "sms",
                                             "body_text": "Again {{ first_name }}",
                                             "audience": {"tag": tag}}).json()["id"]
    launch(api, again, workers=2, batch_size=10)
    view = wait_for(api, again, finished)
    assert view["counts"]["skipped"] == 1  # the invalid number, not tried again
    assert _texts_to(stack, digits)[-1] == "Again C5"
    assert not [t for t in _texts_to(stack, numbers[1][1:]) if t.startswith("Again")]


def test_a_customer_sms_answered_to_the_smsc_is_taken_after_the_gateway_restarts(
        stack: Stack, api: httpx.Client) -> None:
    """The gateway stores a customer's message before the SMSC gets its answer; killed
    right then (the message stored, its turn not taken), it takes the turn when Ray
    restarts it."""
    from datetime import UTC, datetime

    from actors import registry

    number = f"+55119{random.randrange(10**7, 10**8)}"
    endpoints = ray.get(stack.services.endpoints.remote())
    db = MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db]
    db.sms_inbox.insert_one({"_id": f"killed-{number}", "number": number, "text": "1",
                             "received_at": datetime.now(UTC)})  # as the hook left it
    ray.kill(registry.find(registry.SMS_GATEWAY), no_restart=False)  # before its turn
    answer = _next_text(stack, number[1:], 0, timeout=90)
    assert answer.startswith("Good to see you again!")  # the greeting's "1" answered
    assert db.sms_inbox.find_one({"_id": f"killed-{number}"}) is None
    sessions = api.get("/api/chat/sessions").json()["sessions"]
    assert [s["channel"] for s in sessions if (s.get("contact") or {}).get("phone")
            == number] == ["sms"]
