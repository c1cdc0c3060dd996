"""SMS campaigns end to end: the real API, send tasks over SMPP to the embedded SMSC,
delivery receipts back through the SMS gateway actor, every number once."""

from __future__ import annotations

import os
import random
import signal
import time

import httpx
import ray
from pymongo import MongoClient

from tests.utils.campaigns import finished, launch, wait_for
from tests.utils.stack import Stack, unique_domain

TEXT = ("Ola {{ first_name }}! Seu plano {{ plan }} pode ir para Turbo: 500 Mb/s por "
        "R$ 129,90 ao mes, sem fidelidade. Responda SIM para saber mais ou acesse a loja "
        "online. Oferta valida ate o fim do mes.")  # GSM-7, over 160 characters: 2 parts


def _audience(api: httpx.Client, count: int, held: bool = False) -> tuple[str, list[str]]:
    """`count` customers with numbers +55 11 9PPPP NNNN; n = 1, 2, 3 end in 0001 (refused),
    0002 (throttled once), 0003 (not delivered to the handset); with `held`, the last
    one ends in 9999 (its first submit held unanswered)."""
    prefix = random.randrange(1000, 10_000)
    domain = unique_domain("sms")
    numbers = [f"+55119{prefix:04d}{n:04d}" for n in range(count)]
    if held:
        numbers[-1] = f"+55119{prefix:04d}9999"
    rows = "".join(f"c{n}@{domain},C{n},Basic,{number}\n" for n, number in enumerate(numbers))
    response = api.post("/api/customers/import", params={"tag": domain, "wait": "true"},
                        files={"file": ("a.csv", "email,name,plan,phone\n" + rows)})
    assert response.status_code == 200 and response.json()["imported"] == count, response.text
    return domain, numbers


def test_an_sms_campaign_reaches_every_number_once_and_receipts_settle_it(
        stack: Stack, api: httpx.Client) -> None:
    tag, numbers = _audience(api, 500)
    preview = api.post("/api/campaigns/preview", json={"channel": "sms", "body_text": TEXT})
    assert preview.status_code == 200, preview.text
    assert preview.json()["sms"]["encoding"] == "GSM-7"
    assert preview.json()["sms"]["segments"] == 2
    created = api.post("/api/campaigns", json={"name": "sms", "channel": "sms",
                                               "body_text": TEXT, "audience": {"tag": tag}})
    assert created.status_code == 201, created.text
    campaign_id = created.json()["id"]
    launch(api, campaign_id, workers=4, batch_size=25)
    view = wait_for(api, campaign_id, finished)
    assert view["status"] == "completed"
    assert (view["counts"]["sent"], view["counts"]["failed"], view["retries"]) == (499, 1, 1)

    # Receipts come back after the sends: every sent message is settled by one.
    deadline = time.monotonic() + 60
    while True:
        view = api.get(f"/api/campaigns/{campaign_id}").json()
        if view["counts"]["delivered"] + view["counts"]["undeliverable"] == 499:
            break
        assert time.monotonic() < deadline, view["counts"]
        time.sleep(0.5)
    assert (view["counts"]["delivered"], view["counts"]["undeliverable"]) == (498, 1)
    assert view["rates"]["delivered"] == round(498 / 499, 4)
    assert view["channel"] == "sms"

    received = ray.get(stack.services.sms_counts.remote(numbers[0][1:10]))
    expected = {number[1:]: 1 for n, number in enumerate(numbers) if n != 1}
    assert received == expected  # each number once (two parts, one message), 0001 never
    [message] = ray.get(stack.services.sms_outbox.remote(numbers[5][1:]))["messages"]
    assert message["parts"] == 2 and message["text"].startswith("Ola C5! Seu plano Basic")

    endpoints = ray.get(stack.services.endpoints.remote())
    db = MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db]
    by_number = {c["phone"]: c["_id"] for c in db.customers.find({"tags": tag})}

    def delivery(n: int) -> dict:
        return db.deliveries.find_one({"_id": f"{campaign_id}:{by_number[numbers[n]]}"})
    refused, throttled, lost, fine = delivery(1), delivery(2), delivery(3), delivery(7)
    assert (refused["status"], refused["attempts"]) == ("failed", 1)
    assert refused["last_error"] == "ESME_RINVDSTADR" and "receipt" not in refused
    assert (throttled["status"], throttled["attempts"], throttled["receipt"]) == (
        "sent", 2, "delivered")
    assert (lost["status"], lost["receipt"]) == ("sent", "undeliverable")
    assert fine["segments"] == 2 and len(fine["smsc_ids"]) == 2 and fine["channel"] == "sms"
    stats = ray.get(stack.services.smsc_stats.remote())
    assert stats["throttled"] >= 1 and stats["rejected"] >= 1


def test_sms_and_email_campaigns_are_checked_for_what_their_channel_needs(api) -> None:
    domain = unique_domain("smsbad")
    html = api.post("/api/campaigns", json={"name": "x", "channel": "sms", "body_text": "hi",
                                            "body_html": "<p>hi</p>",
                                            "audience": {"tag": domain}})
    assert html.status_code == 422 and html.json()["detail"][0]["field"] == "body.body_html"
    no_subject = api.post("/api/campaigns", json={"name": "x", "body_text": "hi"})
    assert no_subject.status_code == 422
    assert no_subject.json()["detail"][0]["field"] == "body.subject"
    pigeon = api.post("/api/campaigns", json={"name": "x", "channel": "pigeon",
                                              "subject": "s", "body_text": "hi"})
    assert pigeon.status_code == 422 and pigeon.json()["detail"][0]["field"] == "body.channel"


def test_a_send_worker_killed_mid_sms_batch_leaves_every_number_one_message(
        stack: Stack, api: httpx.Client) -> None:
    """The SMSC holds the submit to the number ending 9999 unanswered; the rest of its
    batch is answered and recorded; its worker is killed: the held message is dropped
    with the session, and the batch, claimed again, sends it from another worker."""
    tag, numbers = _audience(api, 40, held=True)
    created = api.post("/api/campaigns", json={"name": "sms kill", "channel": "sms",
                                               "body_text": "Oi {{ first_name }}",
                                               "audience": {"tag": tag}})
    campaign_id = created.json()["id"]
    launch(api, campaign_id, workers=2, batch_size=10, connections=2)
    held = numbers[-1][1:]
    deadline = time.monotonic() + 60
    while held not in ray.get(stack.services.sms_holding.remote()):
        assert time.monotonic() < deadline, "the held SMS never reached the SMSC"
        time.sleep(0.1)
    endpoints = ray.get(stack.services.endpoints.remote())
    db = MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db]
    customer = db.customers.find_one({"phone": numbers[-1]})
    batch = db.batches.find_one({"campaign_id": campaign_id, "customer_ids": customer["_id"]})
    while db.deliveries.count_documents({"batch_id": batch["_id"]}) < len(
            batch["customer_ids"]) - 1:
        assert time.monotonic() < deadline, "the held batch never settled"
        time.sleep(0.1)
    worker = db.deliveries.find_one({"batch_id": batch["_id"]})["worker"]
    os.kill(int(worker.rsplit("-", 1)[1]), signal.SIGKILL)  # its send worker, mid-batch
    view = wait_for(api, campaign_id, finished)

    assert view["status"] == "completed" and view["counts"]["sent"] == 39
    received = ray.get(stack.services.sms_counts.remote(numbers[0][1:10]))
    assert received == {number[1:]: 1 for n, number in enumerate(numbers) if n != 1}
    again = db.deliveries.find_one({"_id": f"{campaign_id}:{customer['_id']}"})
    assert again["status"] == "sent" and again["worker"] != worker
