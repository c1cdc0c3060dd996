"""The batch sender against a real SMTP server that demands a login, and real MongoDB."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from pydantic import SecretStr
from pymongo import MongoClient

from app import campaigns
from app.config import Endpoints
from app.local_services import SinkHandler, free_port
from app.models import Audience, CampaignCreate, LaunchOptions
from app.sending import BatchJob, run_batch
from tests.utils.stack import Stack


@pytest.fixture
def login_relay():
    """An SMTP relay that accepts user 'relay' with password 'right' only."""
    handler = SinkHandler(None)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"relay" and auth_data.password == b"right"
        return AuthResult(success=ok, handled=False)  # let aiosmtpd answer 535

    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, auth_required=True,
                            auth_require_tls=False, authenticator=authenticator)
    controller.start()
    yield handler, port
    controller.stop()


async def _campaign_with_audience(stack: Stack, db_name: str, count: int,
                                  claim: str) -> tuple[dict, list]:
    """A running campaign with `count` deliveries, claimed for `claim` as the runner does."""
    endpoints = await stack.services.endpoints.remote()
    sync_db = MongoClient(endpoints.mongodb_uri)[db_name]
    sync_db.customers.insert_many([{"_id": f"c{n}", "email": f"c{n}@auth.example",
                                    "name": f"C {n}", "plan": "Basic", "tags": ["auth"]}
                                   for n in range(count)])
    from app.db import database

    db = database(endpoints.mongodb_uri, db_name)
    doc = await campaigns.create_campaign(
        db, CampaignCreate(name="auth", subject="s", body_text="t",
                           audience=Audience(tag="auth")), created_by="test")
    await campaigns.launch_campaign(db, doc["_id"], LaunchOptions(), connections=2)
    await campaigns.materialize(db, doc["_id"], [f"c{n}" for n in range(count)])
    ids = await campaigns.due_pending(db, doc["_id"], count)
    assert await campaigns.claim_batch(db, ids, claim, lease_s=30) == count
    return doc, ids


async def _job(stack: Stack, db_name: str, doc: dict, claim: str, port: int,
               password: str) -> tuple[BatchJob, str]:
    """The batch as the runner would hand it to a task, against the login relay."""
    endpoints = await stack.services.endpoints.remote()
    settings = stack.settings.model_copy(update={"mongodb_db": db_name, "smtp_user": "relay",
                                                 "smtp_password": SecretStr(password)})
    job = BatchJob(campaign_id=doc["_id"], claim=claim, settings=settings,
                   endpoints=Endpoints(endpoints.mongodb_uri, "127.0.0.1", port),
                   templates=doc["templates"], signing_secret="k", connections=2)
    return job, endpoints.mongodb_uri


async def test_bad_smtp_login_fails_the_campaign_once(stack: Stack, login_relay) -> None:
    handler, port = login_relay
    db_name = f"auth_{uuid.uuid4().hex[:8]}"
    doc, _ = await _campaign_with_audience(stack, db_name, 6, "claim-1")
    job, mongodb_uri = await _job(stack, db_name, doc, "claim-1", port, "wrong")
    summary = await run_batch(job)

    sync_db = MongoClient(mongodb_uri)[db_name]
    campaign = sync_db.campaigns.find_one({"_id": doc["_id"]})
    assert campaign["status"] == "failed"
    assert campaign["failure_reason"].startswith("SMTP authentication failed")
    assert "wrong" not in campaign["failure_reason"]
    # No delivery failed or spent an attempt: all are back to pending, none sent.
    statuses = [d["status"] for d in sync_db.deliveries.find({"campaign_id": doc["_id"]})]
    assert statuses == ["pending"] * 6
    assert handler.total == 0 and summary["stopped"] == "auth"


async def test_right_login_sends_and_retried_claim_skips_what_was_sent(
        stack: Stack, login_relay) -> None:
    handler, port = login_relay
    db_name = f"auth_{uuid.uuid4().hex[:8]}"
    doc, _ = await _campaign_with_audience(stack, db_name, 5, "claim-2")
    job, mongodb_uri = await _job(stack, db_name, doc, "claim-2", port, "right")
    first = await run_batch(job)
    again = await run_batch(job)  # what Ray does when it retries a task: same claim

    assert first["sent"] == 5 and handler.total == 5
    assert again["claimed"] == 0 and handler.total == 5
    counts = MongoClient(mongodb_uri)[db_name].campaigns.find_one(
        {"_id": doc["_id"]})["counts"]
    assert counts["sent"] == 5


async def test_a_task_whose_claim_was_requeued_stops_sending(stack: Stack, login_relay) -> None:
    """If the runner requeues a claim (its lease ran out while the task was slow), the
    task notices at its next renewal and sends nothing more: another task has them."""
    handler, port = login_relay
    db_name = f"lease_{uuid.uuid4().hex[:8]}"
    doc, _ = await _campaign_with_audience(stack, db_name, 5, "claim-3")
    job, mongodb_uri = await _job(stack, db_name, doc, "claim-3", port, "right")
    job.connections = 1
    job.limits = {"relay": 1.0}
    job.settings = job.settings.model_copy(update={"send_lease_s": 3.0})
    sync_db = MongoClient(mongodb_uri)[db_name]
    reserved = 0

    async def slow_after_the_first(limits: dict, n: float) -> float:
        nonlocal reserved
        reserved += 1
        if reserved == 2:  # the first went out: now the runner's sweep takes the claim back
            for _ in range(200):  # (once the first outcome is written: it is written behind)
                if sync_db.deliveries.count_documents({"status": "sent"}):
                    break
                await asyncio.sleep(0.05)
            sync_db.deliveries.update_many({"claim": "claim-3", "status": "sending"},
                                           {"$set": {"status": "pending", "claim": None}})
        return 0.0 if reserved == 1 else 30.0

    summary = await run_batch(job, reserve=slow_after_the_first)
    assert handler.total == 1 and summary.get("sent") == 1
    assert summary["stopped"] == "lease lost"
    assert sync_db.deliveries.count_documents({"status": "pending"}) == 4
