"""WhatsApp end to end, through the real app: the embedded Cloud API server subscribes
the chat app's webhook through its handshake, posts customers' messages and our
messages' statuses to it signed with the app's secret (through the Serve proxy); the
seed's refusal flow ends in the counter-offer there; a forged notification changes
nothing; a campaign with the rule "WhatsApp, then SMS, then email" reaches each
customer on the channel the rule picks, once per channel, statuses through read."""

from __future__ import annotations

import json
import random
import time
from collections import Counter

import httpx
import ray
from pymongo import MongoClient

from app.channels.whatsapp.webhook import SIGNATURE_HEADER
from tests.utils.campaigns import finished, launch, wait_for
from tests.utils.stack import Stack, unique_domain


def _database(stack: Stack):
    endpoints = ray.get(stack.services.endpoints.remote())
    return MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db]


def _subscribed(stack: Stack) -> str:
    """The webhook URL the chat app subscribed (it does so once it answers)."""
    deadline = time.monotonic() + 60
    while not (url := ray.get(stack.services.whatsapp_webhook.remote())["url"]):
        assert time.monotonic() < deadline, "the WhatsApp webhook was never subscribed"
        time.sleep(0.5)
    return url


def _sent(stack: Stack, wa_id: str, seen: int, timeout: float = 30.0) -> dict:
    """The business's message number `seen` (0 first) to the number, waiting for it."""
    deadline = time.monotonic() + timeout
    while len(sent := ray.get(stack.services.whatsapp_sent.remote(wa_id))) <= seen:
        assert time.monotonic() < deadline, f"the business sent only {sent}"
        time.sleep(0.1)
    return sent[seen]


def _titles(message: dict) -> list[str]:
    return [option["title"] for option in message.get("options", [])]


def _customers(api: httpx.Client, rows: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """Customers (name, phone or ""), tagged together: (tag, their ids in order)."""
    domain = unique_domain("wa")
    body = "".join(f"w{n}@{domain},{name},Basic,{phone}\n"
                   for n, (name, phone) in enumerate(rows))
    response = api.post("/api/customers/import", params={"tag": domain, "wait": "true"},
                        files={"file": ("a.csv", "email,name,plan,phone\n" + body)})
    assert response.status_code == 200 and response.json()["imported"] == len(rows), \
        response.text
    ids, cursor = {}, None
    while True:
        page = api.get("/api/customers", params={"tag": domain, "limit": 500,
                                                 **({"cursor": cursor} if cursor else {})})
        ids |= {c["email"]: c["id"] for c in page.json()["customers"]}
        if not (cursor := page.json()["next_cursor"]):
            break
    return domain, [ids[f"w{n}@{domain}"] for n in range(len(rows))]


def _number() -> str:
    return f"55219{random.randrange(10**7, 10**8)}"


def test_the_handshake_answers_only_our_verify_token(stack: Stack) -> None:
    url = _subscribed(stack)
    with httpx.Client() as client:
        for params in ({"hub.mode": "subscribe", "hub.verify_token": "guess",
                        "hub.challenge": "42"},
                       {"hub.challenge": "42"},
                       {"hub.mode": "unsubscribe", "hub.challenge": "42"}):
            assert client.get(url, params=params).status_code == 403


def test_the_bot_flow_over_whatsapp_ends_in_the_counter_offer_there(
        stack: Stack, api: httpx.Client) -> None:
    _subscribed(stack)
    wa_id = _number()
    _, [customer_id] = _customers(api, [("Wanda", f"+{wa_id}")])
    ray.get(stack.services.whatsapp_register.remote(wa_id, "Wanda"))
    ray.get(stack.services.whatsapp_say.remote(wa_id, "hi"))
    greeting = _sent(stack, wa_id, 0)
    assert greeting["type"] == "interactive" and _titles(greeting) == ["Yes", "No"], greeting

    def press(n: int, option: str) -> dict:
        ray.get(stack.services.whatsapp_press.remote(wa_id, option))
        return _sent(stack, wa_id, n)

    assert press(1, "1")["text"].startswith("Good to see you again!")
    assert "Turbo plan" in press(2, "1")["text"]
    assert press(3, "2")["text"].startswith("No problem, thank you for your time!")
    offer = _sent(stack, wa_id, 4, timeout=60)  # after the cooldown, on WhatsApp
    assert offer["text"].startswith("Special offer for you:") and "Accept" in _titles(offer)
    sessions = api.get("/api/chat/sessions").json()["sessions"]
    [mine] = [s for s in sessions if s.get("customer_id") == customer_id]
    assert mine["channel"] == "whatsapp" and mine["node"] == "counter_offer"
    assert press(5, str(_titles(offer).index("Accept") + 1))["text"].startswith(
        "Offer accepted!")
    db = _database(stack)
    deadline = time.monotonic() + 30
    while (found := db.offers.find_one({"session_id": mine["id"]}))["status"] != "accepted":
        assert time.monotonic() < deadline, found
        time.sleep(0.2)
    assert found["whatsapp_to"] == wa_id and found["customer_id"] == customer_id
    window = db.customers.find_one({"_id": customer_id})["whatsapp"]["last_inbound_at"]
    assert window is not None  # the 24-hour window the customer opened


def test_a_forged_notification_is_refused_and_changes_nothing(stack: Stack) -> None:
    url = _subscribed(stack)
    wa_id = _number()
    body = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messages": [{
            "from": wa_id, "id": "wamid.forged", "timestamp": "0", "type": "text",
            "text": {"body": "hi"}}]}}]}]}).encode()
    for signature in (None, "sha256=" + "0" * 64, "sha1=abc", ""):
        assert ray.get(stack.services.whatsapp_deliver_raw.remote(body, signature)) == 401
    db = _database(stack)
    assert db.channel_inbox.find_one({"_id": "whatsapp:wamid.forged"}) is None
    assert db.whatsapp_chats.find_one({"_id": wa_id}) is None
    with httpx.Client() as client:  # the signature is checked before the body is parsed
        garbage = client.post(url, content=b"{not json", headers={SIGNATURE_HEADER: "x"})
    assert garbage.status_code == 401


def test_a_campaign_by_whatsapp_then_sms_then_email_reaches_each_customer_once(
        stack: Stack, api: httpx.Client) -> None:
    """2,000 customers, by n % 10: 0-4 and 9 read WhatsApp; 5 have no WhatsApp; 6
    blocked the business; 7 never read; 8 have no phone. WhatsApp carries the readers;
    the failed (5, 6) and the unread within the window (7) go by SMS (confirmed by its
    delivery receipt); those without a phone by email."""
    _subscribed(stack)
    prefix = random.randrange(1000, 10_000)
    phones = [f"+55219{prefix:04d}{n + 100:04d}" if n % 10 != 8 else ""
              for n in range(2000)]
    tag, ids = _customers(api, [(f"C{n}", phone) for n, phone in enumerate(phones)])
    for n, phone in enumerate(phones):
        group = n % 10
        if group in (0, 1, 2, 3, 4, 9, 7):
            stack.services.whatsapp_register.remote(phone[1:], f"C{n}", reads=group != 7)
        elif group == 6:
            stack.services.whatsapp_block.remote(phone[1:])
    ray.get(stack.services.whatsapp_sent_counts.remote())  # (the calls above are done)
    created = api.post("/api/campaigns", json={
        "name": "wa", "channel": "whatsapp", "fallback": ["sms", "email"],
        "fallback_after_s": 60, "confirm": "read", "subject": "News",
        "body_text": "Hi {{ first_name }}, news!", "audience": {"tag": tag},
        "channel_options": {"whatsapp": {"template": "campaign_message", "language": "en",
                                         "parameters": ["Hi {{ first_name }}, news!"]}}})
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    launch(api, campaign_id, workers=4, batch_size=100)
    # (60 s for a read or a receipt to come back: generous, so a loaded machine's slower
    # statuses do not move a reader on; the unread wait it out)
    view = wait_for(api, campaign_id, finished, timeout_s=400)
    assert view["status"] == "completed" and view["counts"]["sent"] == 2000, view["counts"]

    db = _database(stack)
    deliveries = {d["customer_id"]: d for d in db.deliveries.find({"campaign_id": campaign_id})}
    assert len(deliveries) == 2000
    expected = {**dict.fromkeys((0, 1, 2, 3, 4, 9), "whatsapp"),
                **dict.fromkeys((5, 6, 7), "sms"), 8: "email"}
    carried = Counter((n % 10, deliveries[cid]["channel"]) for n, cid in enumerate(ids))
    assert carried == Counter({(group, channel): 200
                               for group, channel in expected.items()}), carried
    tried = {n % 10: [t["channel"] for t in deliveries[cid].get("tried", [])]
             for n, cid in enumerate(ids)}
    assert tried == {0: [], 1: [], 2: [], 3: [], 4: [], 9: [], 8: [],
                     5: ["whatsapp"], 6: ["whatsapp"], 7: ["whatsapp"]}, tried
    why = Counter(deliveries[cid]["tried"][0]["why"] for n, cid in enumerate(ids)
                  if n % 10 in (5, 6, 7))
    assert why == {"failed": 400, "not read in time": 200}, why

    # Once per channel per customer: the Cloud API accepted one message per number
    # that has WhatsApp, the SMSC one per number moved on, the relay one per address.
    on_whatsapp = ray.get(stack.services.whatsapp_sent_counts.remote())
    mine = {phone[1:] for n, phone in enumerate(phones) if n % 10 in (0, 1, 2, 3, 4, 9, 7)}
    assert {k: v for k, v in on_whatsapp.items() if k in mine} == dict.fromkeys(mine, 1)
    texted = ray.get(stack.services.sms_counts.remote(f"55219{prefix:04d}"))
    assert sorted(texted.values()) == [1] * 600
    assert {number.lstrip("+") for number in texted} == {
        phone[1:] for n, phone in enumerate(phones) if n % 10 in (5, 6, 7)}
    mailed = ray.get(stack.services.outbox_counts.remote(tag))
    assert mailed == {f"w{n}@{tag}": 1 for n in range(2000) if n % 10 == 8}

    # Statuses through read where reported, and the funnel per channel.
    readers = [deliveries[cid] for n, cid in enumerate(ids) if n % 10 in (0, 1, 2, 3, 4, 9)]
    assert all(d["receipt"] == "delivered" and d["opened"]["first"] for d in readers)
    deadline = time.monotonic() + 30
    while (funnel := api.get(f"/api/campaigns/{campaign_id}").json()["funnel"]).get(
            "sms", {}).get("delivered", 0) < 600:
        assert time.monotonic() < deadline, funnel
        time.sleep(0.5)
    assert funnel["whatsapp"] == {"sent": 1800, "delivered": 1400, "read": 1200,
                                  "undeliverable": 400}, funnel
    assert funnel["sms"] == {"sent": 600, "delivered": 600} and funnel["email"] == {
        "sent": 200}, funnel
    assert db.fallback_waits.count_documents({"campaign_id": campaign_id}) == 0
    # What was counted as it happened is what a recount of the deliveries gives.
    assert db.campaigns.find_one({"_id": campaign_id})["rollups_repaired"] == 0
