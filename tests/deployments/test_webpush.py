"""Web push end to end, through the real app and the local push service (which plays a
browser's push service and the browser): a verified chat session keeps its browser's
subscription; the refusal's counter-offer is pushed to it, and the push service
decrypts exactly the offer; a campaign by push reaches the subscribed customer, its
notification's "seen" link counts as the delivery's read, and a gone subscription is
final."""

from __future__ import annotations

import json
import time

import httpx
import ray
from pymongo import MongoClient

from tests.utils.campaigns import finished, import_audience, launch, wait_for
from tests.utils.chat import new_session, verified_session
from tests.utils.stack import Stack, unique_domain
from tests.utils.waiting import wait_until


def _database(stack: Stack):
    endpoints = ray.get(stack.services.endpoints.remote())
    return MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db]


def _subscribe(stack: Stack, session: dict, subscription: dict) -> httpx.Response:
    with stack.client(admin=False) as client:
        return client.post(f"/chat/api/sessions/{session['session_id']}/push-subscription",
                           json=subscription,
                           headers={"Authorization": f"Bearer {session['token']}"})


def _browser(stack: Stack) -> dict:
    """A browser's subscription for our key, as `pushManager.subscribe()` makes it."""
    with stack.client(admin=False) as client:
        key = client.get("/chat/api/push/key").json()["public_key"]
    return ray.get(stack.services.push_subscribe.remote(key))


def _customer(api: httpx.Client) -> tuple[str, dict]:
    domain = unique_domain("push")
    import_audience(api, [f"p@{domain}"], domain)
    [customer] = api.get("/api/customers", params={"tag": domain}).json()["customers"]
    return domain, customer


def test_only_a_verified_session_keeps_a_subscription_on_an_allowed_service(
        stack: Stack, api: httpx.Client) -> None:
    _, customer = _customer(api)
    browser = _browser(stack)
    anonymous = new_session(stack)
    assert _subscribe(stack, anonymous, browser).status_code == 409
    session = verified_session(stack, api, customer["email"])
    elsewhere = {**browser, "endpoint": "https://push.evil.example/x"}
    refused = _subscribe(stack, session, elsewhere)
    assert refused.status_code == 422 and "body.endpoint" in refused.text, refused.text
    garbled = _subscribe(stack, session, {**browser, "keys": {"p256dh": "AAAA", "auth": "x"}})
    assert garbled.status_code == 422
    assert _subscribe(stack, session, browser).status_code == 200
    kept = _database(stack).customers.find_one({"_id": customer["id"]})["webpush"]
    assert kept["endpoint"] == browser["endpoint"]


def test_the_counter_offer_is_pushed_and_decrypts_to_the_offer(
        stack: Stack, api: httpx.Client) -> None:
    _, customer = _customer(api)
    session = verified_session(stack, api, customer["email"])
    browser = _browser(stack)
    assert _subscribe(stack, session, browser).status_code == 200
    with stack.client(admin=False) as client:
        for answer in ("1", "1", "2"):  # a client, an upgrade, Turbo refused
            said = client.post(f"/chat/api/sessions/{session['session_id']}/messages",
                               json={"text": answer},
                               headers={"Authorization": f"Bearer {session['token']}"})
            assert said.status_code == 200, said.text
    received = wait_until(lambda: ray.get(stack.services.push_received.remote(
        browser["endpoint"])), 60, "the pushed offer")
    offer = _database(stack).offers.find_one({"session_id": session["session_id"]})
    assert [json.loads(r) for r in received] == [{
        "title": "Special offer for you", "body": offer["text"],
        "url": f"{stack.settings.public_url}/chat/", "tag": f"offer:{offer['_id']}"}]


def test_a_campaign_by_push_is_read_through_its_notification(
        stack: Stack, api: httpx.Client) -> None:
    tag = unique_domain("pushc")
    import_audience(api, [f"a@{tag}", f"b@{tag}", f"c@{tag}"], tag)
    customers = {c["email"]: c for c in api.get("/api/customers",
                                                params={"tag": tag}).json()["customers"]}
    browsers = {}
    for email in (f"a@{tag}", f"b@{tag}"):
        browsers[email] = _browser(stack)
        assert _subscribe(stack, verified_session(stack, api, email),
                          browsers[email]).status_code == 200
    ray.get(stack.services.push_unsubscribe.remote(browsers[f"b@{tag}"]["endpoint"]))
    created = api.post("/api/campaigns", json={
        "name": "push", "channel": "webpush", "subject": "December",
        "body_text": "Hi {{ name }}, new plans!", "audience": {"tag": tag}})
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    launch(api, campaign_id)
    view = wait_for(api, campaign_id, finished)
    assert view["counts"]["sent"] == 1 and view["counts"]["failed"] == 1, view["counts"]
    assert view["counts"]["skipped"] == 1  # c never subscribed
    [shown] = ray.get(stack.services.push_received.remote(browsers[f"a@{tag}"]["endpoint"]))
    notification = json.loads(shown)
    assert notification["title"] == "December"
    assert notification["body"] == f"Hi {customers[f'a@{tag}']['name']}, new plans!"
    with httpx.Client() as client:  # what the service worker does when it is shown
        assert client.get(notification["seen"]).status_code == 200
    db = _database(stack)
    deadline = time.monotonic() + 20
    while (funnel := api.get(f"/api/campaigns/{campaign_id}").json()["funnel"]).get(
            "webpush", {}).get("read", 0) < 1:
        assert time.monotonic() < deadline, funnel
        time.sleep(0.3)
    assert funnel["webpush"] == {"sent": 1, "read": 1}
    gone = db.suppressions.find_one({"_id": f"webpush:{browsers[f'b@{tag}']['endpoint']}"})
    assert gone is not None and gone["reason"] == "hard-bounce"


def test_a_journey_pushes_to_the_subscribed_customer(stack: Stack, api: httpx.Client) -> None:
    """A journey's send on `webpush` reaches the customer's browser through the push
    service (decrypted as a browser would), once."""
    import uuid

    _, customer = _customer(api)
    browser = _browser(stack)
    assert _subscribe(stack, verified_session(stack, api, customer["email"]),
                      browser).status_code == 200
    key, event = f"push-{uuid.uuid4().hex[:6]}", f"push_{uuid.uuid4().hex[:6]}"
    definition = {"name": "By push", "entry": {"event": event}, "steps": [
        {"id": "nudge", "type": "send", "channel": "webpush", "subject": "Your bonus",
         "text": "Hi {{ name }}, it is ready."}]}
    assert api.post("/api/journeys", json={"key": key, "definition": definition}
                    ).status_code == 201
    assert api.post(f"/api/journeys/{key}/publish").status_code == 200
    for _ in range(2):  # the same event twice: one push
        posted = api.post("/api/journeys/events", json={"events": [
            {"id": f"{key}-1", "type": event, "customer_id": customer["id"]}]})
        assert posted.status_code == 202, posted.text
    [shown] = wait_until(lambda: ray.get(stack.services.push_received.remote(
        browser["endpoint"])), 60, "the journey's push")
    notification = json.loads(shown)
    assert (notification["title"], notification["body"]) == (
        "Your bonus", f"Hi {customer['name']}, it is ready.")
    send = wait_until(lambda: _database(stack).journey_sends.find_one({"key": key}),
                      what="the send's record")
    assert (send["channel"], send["status"]) == ("webpush", "sent")
