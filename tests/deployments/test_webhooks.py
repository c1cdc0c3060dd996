"""Outbound webhooks end to end: a real HTTP receiver in this process, events from a
real campaign through the real send path, verified with the published Standard
Webhooks library; retries with the same id, dead letters and their replay.

The stack's retry schedule is short (conftest: 0.2 s steps), so a message dies within
a couple of seconds and an endpoint failing for a second is disabled.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.integrations.webhooks import Subscriptions
from tests.utils.campaigns import create_campaign, finished, import_audience, launch, wait_for
from tests.utils.stack import Stack, unique_domain
from tests.utils.waiting import wait_until

# Send workers read who listens at most this often (app.integrations.webhooks.Subscriptions).
LISTENERS_FRESH_S = Subscriptions().ttl_s + 1.0


RECEIVER_HOST = "127.0.0.77"  # in the test stack's egress_allow, unlike 127.0.0.1


class Receiver:
    """On the loopback address the test stack allow-lists (`egress_allow`), an HTTP
    endpoint per path: answers by the path's mode and keeps every request."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.modes: dict[str, str] = defaultdict(lambda: "ok")
        self.failures_left: Counter[str] = Counter()  # per webhook-id, for "flaky"
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.answer(self.path, headers.get("webhook-id", ""))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": headers,
                                              "body": body.decode(), "status": status})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((RECEIVER_HOST, 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str, message_id: str) -> int:
        mode = self.modes[path]
        if mode == "down":
            return 503
        if mode == "flaky":
            with self.lock:
                if self.failures_left[message_id] < 5:
                    self.failures_left[message_id] += 1
                    return 500
        return 204

    def url(self, path: str) -> str:
        return f"http://{RECEIVER_HOST}:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


def register(api, url: str, events: list[str], **options) -> dict:
    response = api.post("/api/webhooks", json={"url": url, "events": events, **options})
    assert response.status_code == 201, response.text
    return response.json()


def events_for(requests: list[dict], campaign_id: str) -> list[dict]:
    found = []
    for request in requests:
        event = json.loads(request["body"])
        data = event["data"]
        if data.get("campaign_id") == campaign_id:
            found.append({**event, "request": request})
    return found


def test_a_campaigns_events_arrive_signed_and_verifiable(stack: Stack, api, receiver) -> None:
    endpoint = register(api, receiver.url("/crm"),
                        ["campaign.started", "campaign.completed", "delivery.status"])
    secret = endpoint["secret"]
    assert secret.startswith("whsec_")
    listed = api.get("/api/webhooks").json()["webhooks"]
    assert [w for w in listed if w["id"] == endpoint["id"]][0]["secret"] is None
    time.sleep(LISTENERS_FRESH_S)  # send workers learn of the new endpoint

    domain = unique_domain("hooks")
    emails = [f"c{n}@{domain}" for n in range(6)] + [f"r0+reject@{domain}"]
    import_audience(api, emails, tag=domain)
    campaign_id = create_campaign(api, domain)
    launch(api, campaign_id, workers=2, batch_size=3)
    assert wait_for(api, campaign_id, finished)["status"] == "completed"

    def arrived():
        events = events_for(receiver.at("/crm"), campaign_id)
        return events if any(e["type"] == "campaign.completed" for e in events) else None

    events = wait_until(arrived, 60, "the campaign.completed event")
    verifier = Webhook(secret)
    for event in events:
        request = event["request"]
        assert verifier.verify(request["body"], request["headers"])["type"] == event["type"]
        with pytest.raises(WebhookVerificationError):  # a changed body does not verify
            verifier.verify(request["body"].replace("}", " }", 1), request["headers"])
    kinds = Counter(e["type"] for e in events)
    assert kinds["campaign.started"] == 1 and kinds["campaign.completed"] == 1
    statuses = {d["customer_id"]: d["status"] for e in events if e["type"] == "delivery.status"
                for d in e["data"]["deliveries"]}
    assert len(statuses) == len(emails)
    assert Counter(statuses.values()) == {"sent": 6, "failed": 1}
    completed = [e for e in events if e["type"] == "campaign.completed"][0]
    assert completed["data"]["counts"]["sent"] == 6
    ids = [e["request"]["headers"]["webhook-id"] for e in events]
    assert len(ids) == len(set(ids))  # each event once, each with its own id
    api.delete(f"/api/webhooks/{endpoint['id']}")


def test_an_endpoint_added_while_a_campaign_runs_hears_its_later_deliveries(
        stack: Stack, api, receiver) -> None:
    """The runner hands who listens to each batch, and the API tells it of a new
    endpoint: the batches it starts after that report to it (the runner itself reads
    the endpoints again only every minute)."""
    domain = unique_domain("hooklate")
    emails = [f"c{n:02d}@{domain}" for n in range(40)]
    import_audience(api, emails, tag=domain)
    campaign_id = create_campaign(api, domain)
    launch(api, campaign_id, workers=1, batch_size=2, rate_limit_per_s=5)  # ~8 s
    wait_for(api, campaign_id, lambda view: view["counts"]["sent"] >= 2)
    endpoint = register(api, receiver.url("/late"), ["delivery.status"])
    assert wait_for(api, campaign_id, finished)["status"] == "completed"

    def reported():
        events = events_for(receiver.at("/late"), campaign_id)
        return {d["customer_id"]: d["status"] for e in events for d in e["data"]["deliveries"]}

    statuses = wait_until(reported, 30, "delivery.status events at the late endpoint")
    assert set(statuses.values()) == {"sent"} and len(statuses) < len(emails)
    api.delete(f"/api/webhooks/{endpoint['id']}")


def _launch_tiny_campaign(api) -> str:
    domain = unique_domain("hookcamp")
    import_audience(api, [f"a@{domain}"], tag=domain)
    campaign_id = create_campaign(api, domain)
    launch(api, campaign_id)
    return campaign_id


def test_a_receiver_failing_five_times_gets_the_event_once_more_with_its_id(
        stack: Stack, api, receiver) -> None:
    receiver.modes["/flaky"] = "flaky"
    endpoint = register(api, receiver.url("/flaky"), ["campaign.started"])
    campaign_id = _launch_tiny_campaign(api)

    def delivered():
        return [e for e in events_for(receiver.at("/flaky"), campaign_id)
                if e["request"]["status"] == 204]

    wait_until(delivered, 60, "the event after five failures")
    attempts = events_for(receiver.at("/flaky"), campaign_id)
    assert [a["request"]["status"] for a in attempts] == [500] * 5 + [204]
    assert len({a["request"]["headers"]["webhook-id"] for a in attempts}) == 1
    bodies = {a["request"]["body"] for a in attempts}
    assert len(bodies) == 1  # the same bytes each time; only the timestamp header moves
    for attempt in attempts:
        Webhook(endpoint["secret"]).verify(attempt["request"]["body"],
                                           attempt["request"]["headers"])
    message_id = attempts[0]["request"]["headers"]["webhook-id"]

    def recorded():  # the actor writes what was answered a moment after the answer
        messages = api.get(f"/api/webhooks/{endpoint['id']}/messages").json()["messages"]
        return [m for m in messages if m["id"] == message_id and m["status"] == "delivered"]

    assert wait_until(recorded, 30, "the delivery recorded")[0]["attempts"] == 6
    time.sleep(1.0)  # nothing more comes for it
    assert len(events_for(receiver.at("/flaky"), campaign_id)) == 6
    api.delete(f"/api/webhooks/{endpoint['id']}")


def test_a_receiver_down_for_good_ends_in_dead_letters_that_a_replay_delivers(
        stack: Stack, api, receiver) -> None:
    receiver.modes["/down"] = "down"
    endpoint = register(api, receiver.url("/down"), ["campaign.started"])
    campaign_id = _launch_tiny_campaign(api)
    base = f"/api/webhooks/{endpoint['id']}"

    def dead():
        return api.get(f"{base}/messages", params={"status": "dead"}).json()["messages"]

    [letter] = wait_until(dead, 60, "a dead letter")
    assert letter["attempts"] == len(stack.settings.webhook_retry_s) + 1
    assert letter["last_status"] == 503
    view = wait_until(lambda: [w for w in api.get("/api/webhooks").json()["webhooks"]
                               if w["id"] == endpoint["id"] and not w["enabled"]],
                      30, "the failing endpoint disabled")[0]
    assert "HTTP 503" in view["disabled_reason"] and view["waiting"]["dead"] == 1
    failed = len(events_for(receiver.at("/down"), campaign_id))

    receiver.modes["/down"] = "ok"
    replayed = api.post(f"{base}/replay")
    assert replayed.status_code == 200 and replayed.json() == {"replayed": 1}
    wait_until(lambda: [e for e in events_for(receiver.at("/down"), campaign_id)
                        if e["request"]["status"] == 204], 60, "the replayed letter")
    received = events_for(receiver.at("/down"), campaign_id)
    assert len(received) == failed + 1
    assert received[-1]["request"]["headers"]["webhook-id"] == letter["id"]
    assert api.get(f"{base}/messages", params={"status": "dead"}).json()["messages"] == []
    assert [w for w in api.get("/api/webhooks").json()["webhooks"]
            if w["id"] == endpoint["id"]][0]["enabled"] is True
    api.delete(base)


def test_webhook_input_is_checked_and_named(api) -> None:
    bad_url = api.post("/api/webhooks", json={"url": "ftp://x", "events": ["campaign.started"]})
    assert bad_url.status_code == 422 and bad_url.json()["detail"][0]["field"] == "body.url"
    unknown = api.post("/api/webhooks", json={"url": f"http://{RECEIVER_HOST}:9/x",
                                              "events": ["campaign.exploded"]})
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["field"] == "body.events"
    assert "campaign.exploded" in unknown.json()["detail"][0]["message"]
    assert api.post("/api/webhooks/ep_nope/replay").status_code == 404


@pytest.mark.parametrize("url", ["http://127.0.0.1:8265/api/jobs/",
                                 "http://169.254.169.254/latest/meta-data/",
                                 "http://localhost:9/x", "http://[::1]:9/x",
                                 "http://10.1.2.3/x", "http://[::ffff:127.0.0.1]:9/x"])
def test_a_webhook_to_an_internal_address_is_refused_naming_the_url(api, url: str) -> None:
    refused = api.post("/api/webhooks", json={"url": url, "events": ["campaign.started"]})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"][0]["field"] == "body.url"
    assert url not in [w["url"] for w in api.get("/api/webhooks").json()["webhooks"]]


def test_an_allowed_endpoint_cannot_be_moved_to_an_internal_address(api, receiver) -> None:
    endpoint = register(api, receiver.url("/moved"), ["campaign.started"])
    moved = api.patch(f"/api/webhooks/{endpoint['id']}",
                      json={"url": "http://169.254.169.254/latest/meta-data/"})
    assert moved.status_code == 422 and moved.json()["detail"][0]["field"] == "body.url"
    api.delete(f"/api/webhooks/{endpoint['id']}")


async def test_an_unsubscribe_whose_replica_died_before_its_event_still_reaches_the_crm(
        stack: Stack, api, receiver) -> None:
    """The change and its event are one write: a replica killed right after it (here: the
    same update, with nothing after it) leaves the event in the customer's outbox, and
    the webhook actor's sweep delivers it."""
    from app.audience.customers import set_unsubscribed
    from app.core.db import database

    endpoint = register(api, receiver.url("/unsub"), ["customer.unsubscribed"])
    domain = unique_domain("unsub-hook")
    import_audience(api, [f"gone@{domain}"], tag=domain)
    customer = api.get("/api/customers", params={"tag": domain}).json()["customers"][0]
    endpoints = await stack.services.endpoints.remote()
    db = database(endpoints.mongodb_uri, stack.settings.mongodb_db)
    await asyncio.sleep(Subscriptions().ttl_s)  # every process's view has the endpoint
    assert await set_unsubscribed(db, customer["id"], via="link")  # then the replica died
    delivered = wait_until(lambda: receiver.at("/unsub"), 60, "the sweep's delivery")
    event = json.loads(delivered[0]["body"])
    assert event["type"] == "customer.unsubscribed"
    assert event["data"] == {"customer_id": customer["id"], "via": "link"}
    api.delete(f"/api/webhooks/{endpoint['id']}")
