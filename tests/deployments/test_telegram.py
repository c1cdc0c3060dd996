"""Telegram end to end, through the real app: the embedded Bot API server posts a
customer's updates to the chat app's webhook (through the Serve proxy), the bot answers
through it; a signed deep link ties the chat to the customer; the seed's refusal flow
ends in the counter-offer in that chat; a forged webhook changes nothing; a campaign
by Telegram reaches the linked customers once and learns who blocked the bot."""

from __future__ import annotations

import json
import random
import time
import uuid

import httpx
import ray
from pymongo import MongoClient

from app.channels.telegram.updates import SECRET_HEADER
from tests.utils.campaigns import finished, import_audience, launch, wait_for
from tests.utils.chat import new_session, verified_session
from tests.utils.stack import Stack, unique_domain
from tests.utils.waiting import wait_until


def _database(stack: Stack):
    endpoints = ray.get(stack.services.endpoints.remote())
    return MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db]


def _chat_id() -> int:
    return random.randrange(10**9, 2 * 10**9)


def _bot_said(stack: Stack, chat_id: int, seen: int, timeout: float = 30.0) -> dict:
    """The bot's message number `seen` (0 first) in the chat, waiting for it."""
    deadline = time.monotonic() + timeout
    while len(sent := ray.get(stack.services.telegram_sent.remote(chat_id))) <= seen:
        assert time.monotonic() < deadline, f"the bot said only {sent}"
        time.sleep(0.1)
    return sent[seen]


def _buttons(message: dict) -> list[str]:
    return [row[0]["text"] for row in message.get("reply_markup", {}).get(
        "inline_keyboard", [])]


def _customers(api: httpx.Client, count: int) -> tuple[str, list[str]]:
    domain = unique_domain("tg")
    rows = "".join(f"t{n}@{domain},T{n},Basic\n" for n in range(count))
    response = api.post("/api/customers/import", params={"tag": domain, "wait": "true"},
                        files={"file": ("a.csv", "email,name,plan\n" + rows)})
    assert response.status_code == 200 and response.json()["imported"] == count, response.text
    listed = api.get("/api/customers", params={"tag": domain, "limit": 500}).json()
    by_email = {c["email"]: c["id"] for c in listed["customers"]}
    return domain, [by_email[f"t{n}@{domain}"] for n in range(count)]


def _link(stack: Stack, api: httpx.Client, customer_id: str, chat_id: int) -> None:
    """The customer opens their deep link in Telegram (`/start <parameter>`)."""
    answer = api.post(f"/api/customers/{customer_id}/telegram-link")
    assert answer.status_code == 200, answer.text
    parameter = answer.json()["link"].split("?start=")[1]
    ray.get(stack.services.telegram_say.remote(chat_id, f"/start {parameter}"))


def _sent_campaign(api: httpx.Client, tag: str, **fields: object) -> tuple[str, dict]:
    """A Telegram campaign to the tag, launched and finished: (its id, its view)."""
    created = api.post("/api/campaigns", json={
        "name": "tg", "channel": "telegram", "body_text": "Hi {{ first_name }}, news!",
        "audience": {"tag": tag}, **fields})
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    launch(api, campaign_id)
    return campaign_id, wait_for(api, campaign_id, finished)


def test_the_bot_flow_over_telegram_ends_in_the_counter_offer_there(
        stack: Stack, api: httpx.Client) -> None:
    _, [customer_id] = _customers(api, 1)
    chat_id = _chat_id()
    _link(stack, api, customer_id, chat_id)
    greeting = _bot_said(stack, chat_id, 0)
    assert _buttons(greeting) == ["Yes", "No"], greeting
    db = _database(stack)
    assert db.customers.find_one({"_id": customer_id})["telegram"]["chat_id"] == str(chat_id)

    def press(n: int, option: str) -> dict:
        ray.get(stack.services.telegram_press.remote(chat_id, option))
        return _bot_said(stack, chat_id, n)

    assert press(1, "1")["text"].startswith("Good to see you again!")
    assert "Turbo plan" in press(2, "1")["text"]
    assert press(3, "2")["text"].startswith("No problem, thank you for your time!")
    offer = _bot_said(stack, chat_id, 4, timeout=60)  # after the cooldown, in the chat
    assert offer["text"].startswith("Special offer for you:") and "Accept" in _buttons(offer)
    sessions = api.get("/api/chat/sessions").json()["sessions"]
    [mine] = [s for s in sessions if s.get("customer_id") == customer_id]
    assert mine["channel"] == "telegram" and mine["node"] == "counter_offer"
    accept = str(_buttons(offer).index("Accept") + 1)
    assert press(5, accept)["text"].startswith("Offer accepted!")
    deadline = time.monotonic() + 30
    while (found := db.offers.find_one({"session_id": mine["id"]}))["status"] != "accepted":
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    assert found["telegram_to"] == str(chat_id) and found["customer_id"] == customer_id


def test_a_forged_webhook_is_refused_and_changes_nothing(stack: Stack) -> None:
    chat_id = _chat_id()
    update = json.dumps({"update_id": 987654321, "message": {
        "message_id": 1, "date": 0, "chat": {"id": chat_id, "type": "private"},
        "text": "/start"}}).encode()
    for secret in (None, "not-the-secret", ""):
        assert ray.get(stack.services.telegram_deliver_raw.remote(update, secret)) == 401
    db = _database(stack)
    assert db.channel_inbox.find_one({"_id": "telegram:987654321"}) is None
    assert db.telegram_chats.find_one({"_id": str(chat_id)}) is None
    url = ray.get(stack.services.telegram_webhook.remote())["url"]
    with httpx.Client() as client:  # the secret checked before the body is even read
        garbage = client.post(url, content=b"{not json", headers={SECRET_HEADER: "x"})
    assert garbage.status_code == 401


def test_a_verified_web_chat_hands_its_customer_a_link_and_an_unverified_one_none(
        stack: Stack, api: httpx.Client) -> None:
    domain = unique_domain("tgweb")
    email = f"ana@{domain}"
    import_audience(api, [email], domain)
    unverified = new_session(stack, email=email)
    with stack.client(admin=False) as client:
        refused = client.post(f"/chat/api/sessions/{unverified['session_id']}/telegram-link",
                              headers={"Authorization": f"Bearer {unverified['token']}"})
        assert refused.status_code == 409
        session = verified_session(stack, api, email)
        wrong = client.post(f"/chat/api/sessions/{session['session_id']}/telegram-link",
                            headers={"Authorization": "Bearer not-its-token"})
        assert wrong.status_code == 404
        given = client.post(f"/chat/api/sessions/{session['session_id']}/telegram-link",
                            headers={"Authorization": f"Bearer {session['token']}"})
    assert given.status_code == 200, given.text
    chat_id = _chat_id()
    parameter = given.json()["link"].split("?start=")[1]
    ray.get(stack.services.telegram_say.remote(chat_id, f"/start {parameter}"))
    _bot_said(stack, chat_id, 0)
    linked = _database(stack).customers.find_one({"email": email})
    assert linked["telegram"]["chat_id"] == str(chat_id)


def test_a_start_parameter_we_did_not_sign_ties_the_chat_to_nobody(
        stack: Stack, api: httpx.Client) -> None:
    _, [customer_id] = _customers(api, 1)
    real = api.post(f"/api/customers/{customer_id}/telegram-link").json()["link"]
    forged = "A" * 16 + real.split("?start=")[1][16:]  # their id, our MAC guessed
    chat_id = _chat_id()
    ray.get(stack.services.telegram_say.remote(chat_id, f"/start {forged}"))
    assert _buttons(_bot_said(stack, chat_id, 0)) == ["Yes", "No"]  # a chat, anonymous
    assert "telegram" not in _database(stack).customers.find_one({"_id": customer_id})


def test_a_telegram_campaign_reaches_the_linked_once_and_learns_who_blocked(
        stack: Stack, api: httpx.Client) -> None:
    tag, ids = _customers(api, 6)
    chats = {cid: _chat_id() for cid in ids[:5]}  # the sixth never linked Telegram
    for cid, chat_id in chats.items():
        _link(stack, api, cid, chat_id)
        _bot_said(stack, chat_id, 0)  # the greeting
    told, quiet = chats[ids[3]], chats[ids[4]]
    ray.get(stack.services.telegram_block.remote(told))  # the bot hears of it
    ray.get(stack.services.telegram_block.remote(quiet, False))  # it learns at send
    campaign_id, view = _sent_campaign(api, tag)
    assert view["counts"]["sent"] == 3, view["counts"]
    assert view["counts"]["failed"] == 1 and view["counts"]["skipped"] == 2
    counts = ray.get(stack.services.telegram_sent_counts.remote())
    for cid in ids[:3]:
        texts = [m["text"] for m in ray.get(stack.services.telegram_sent.remote(chats[cid]))]
        assert texts.count(f"Hi T{ids.index(cid)}, news!") == 1, texts
    assert counts.get(told) == 1 and counts.get(quiet) == 1  # only their greetings
    db = _database(stack)
    reasons = {d["customer_id"]: (d["status"], d.get("last_error"))
               for d in db.deliveries.find({"campaign_id": campaign_id})}
    assert reasons[ids[5]] == ("skipped", "no Telegram chat linked")
    assert reasons[ids[3]] == ("skipped", "suppressed for telegram")
    assert reasons[ids[4]][0] == "failed"
    listed = {e["address"]: e["reason"] for e in db.suppressions.find({"channel": "telegram"})}
    assert listed[str(told)] == "blocked" and listed[str(quiet)] == "hard-bounce"


def test_a_campaign_falls_back_to_email_for_whom_telegram_cannot_reach(
        stack: Stack, api: httpx.Client) -> None:
    """Through the runner: "telegram, then email". The linked get Telegram, the
    unlinked and the one who blocked the bot get email; one message each."""
    tag, ids = _customers(api, 3)
    linked, blocked = _chat_id(), _chat_id()
    _link(stack, api, ids[0], linked)
    _link(stack, api, ids[1], blocked)
    _bot_said(stack, blocked, 0)
    ray.get(stack.services.telegram_block.remote(blocked))
    campaign_id, view = _sent_campaign(api, tag, fallback=["email"], subject="News")
    carried = {d["customer_id"]: (d["status"], d.get("channel"), d.get("last_error"))
               for d in _database(stack).deliveries.find({"campaign_id": campaign_id})}
    assert view["fallback"] == ["email"] and view["counts"]["sent"] == 3, carried
    texts = [m["text"] for m in ray.get(stack.services.telegram_sent.remote(linked))]
    assert texts.count("Hi T0, news!") == 1
    mailed = ray.get(stack.services.outbox_counts.remote(tag))
    assert mailed == {f"t1@{tag}": 1, f"t2@{tag}": 1}
    carried = {d["customer_id"]: d["channel"]
               for d in _database(stack).deliveries.find({"campaign_id": campaign_id})}
    assert carried == {ids[0]: "telegram", ids[1]: "email", ids[2]: "email"}


def test_a_journey_sends_on_telegram_to_the_linked_and_skips_the_unlinked(
        stack: Stack, api: httpx.Client) -> None:
    """A journey's send on `telegram` goes through the channel as a campaign's does:
    the linked customer gets it from the bot, the unlinked one's step is skipped and
    both go on to the email."""
    domain, ids = _customers(api, 2)
    chat_id = _chat_id()
    _link(stack, api, ids[0], chat_id)
    db = _database(stack)
    wait_until(lambda: (db.customers.find_one({"_id": ids[0]}).get("telegram") or {}
                        ).get("chat_id") == str(chat_id), what="the link")
    seen = len(ray.get(stack.services.telegram_sent.remote(chat_id)))
    key = f"tg-{uuid.uuid4().hex[:6]}"
    event = f"tg_{uuid.uuid4().hex[:6]}"
    definition = {"name": "By Telegram", "entry": {"event": event}, "steps": [
        {"id": "tell", "type": "send", "channel": "telegram",
         "text": "Hi {{ first_name }}, your bonus is ready."},
        {"id": "mail", "type": "send", "channel": "email", "subject": "Your bonus",
         "text": "Details", "track": False}]}
    assert api.post("/api/journeys", json={"key": key, "definition": definition}
                    ).status_code == 201
    assert api.post(f"/api/journeys/{key}/publish").status_code == 200
    posted = api.post("/api/journeys/events", json={"events": [
        {"id": f"{key}-{cid}", "type": event, "customer_id": cid} for cid in ids]})
    assert posted.status_code == 202, posted.text
    told = _bot_said(stack, chat_id, seen)
    assert told["text"] == "Hi T0, your bonus is ready."
    wait_until(lambda: db.journey_sends.count_documents({"key": key}) == 4,
               what="both steps for both customers")
    sends = {(s["customer_id"], s["step"]): (s["status"], s["error"])
             for s in db.journey_sends.find({"key": key})}
    assert sends == {(ids[0], "tell"): ("sent", None), (ids[0], "mail"): ("sent", None),
                     (ids[1], "tell"): ("skipped", "no Telegram chat linked"),
                     (ids[1], "mail"): ("sent", None)}
    assert len(ray.get(stack.services.telegram_sent.remote(chat_id))) == seen + 1
    assert api.get("/api/outbox", params={"to": f"t1@{domain}"}).json()["matched"] == 1
