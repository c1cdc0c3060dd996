"""The batch sender against real SMTP servers and the real MongoDB wire protocol:
logins, reruns of a batch, lost claims, and what one batch costs the database."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from pydantic import SecretStr
from pymongo import MongoClient, monitoring

from app.audience.customers import AUDIENCE_BUCKETS, SEND_FIELDS, audience_page_query, bucket_of
from app.audience.models import Audience
from app.campaigns import batches, rounds
from app.campaigns import records as campaigns
from app.campaigns.batch import BatchJob, BatchSummary
from app.campaigns.models import CampaignCreate, LaunchOptions
from app.campaigns.outcomes import ROLLUP_EVERY_S
from app.campaigns.sending import run_batch
from app.core import rollups
from app.core.bulk import Writes
from app.core.config import FurtherRelay, load_settings
from app.core.db import database, ensure_indexes
from app.core.endpoints import Endpoints
from app.core.ids import delivery_id
from app.core.ratelimit import RateLimits
from app.core.runtime import Runtime
from app.core.signing_keys import KeyRing
from app.core.statuses import BatchStatus
from app.core.windows import Window
from app.integrations.webhooks import Subscriptions
from embedded.processes import free_port
from embedded.smsc import Smsc
from embedded.smtp_sink import SinkHandler
from embedded.telegram_api import TelegramApi


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



SETTINGS = load_settings(send_lease_s=5.0, retry_backoff_s=0.2)


async def run_and_close(job: BatchJob, **context) -> BatchSummary:
    """Run the batch, then write its close as the runner's round does."""
    summary = await run_batch(job, **context)
    if summary.close is not None:
        await rounds.record_round(job.runtime.database(), job.campaign_id, {}, None,
                                  [summary.close])
    return summary


class Batch:
    """A running campaign with one batch claimed for `claim`, as the runner makes it."""

    def __init__(self, mongodb_uri: str, count: int, claim: str = "claim-1"):
        self.mongodb_uri, self.count, self.claim = mongodb_uri, count, claim
        self.db_name = f"send_{uuid.uuid4().hex[:8]}"

    async def create(self) -> Batch:
        self.sync = MongoClient(self.mongodb_uri)[self.db_name]
        self.customer_ids = [f"c{n:03d}" for n in range(self.count)]
        self.sync.customers.insert_many([
            {"_id": cid, "email": f"{cid}@send.example", "name": f"C {cid}", "plan": "Basic",
             "tags": ["send"], "unsubscribed": False, "bucket": bucket_of(cid),
             "shard": bucket_of(cid) % 32}
            for cid in self.customer_ids])
        self.db = database(self.mongodb_uri, self.db_name)
        await ensure_indexes(self.db)
        return await self._launched("send")

    async def create_on(self, other: Batch) -> Batch:
        """A second campaign over `other`'s customers (same database), one batch claimed."""
        self.db_name, self.sync, self.db = other.db_name, other.sync, other.db
        self.customer_ids = other.customer_ids
        return await self._launched("again")

    async def _launched(self, name: str) -> Batch:
        """A running campaign to the customers, with one batch claimed for `claim`."""
        doc = await campaigns.create_campaign(
            self.db, CampaignCreate(name=name, subject="Hi {{ first_name }}",
                                    body_text="Plan {{ plan }}", audience=Audience(tag="send")),
            created_by="test")
        self.campaign = await campaigns.launch_campaign(self.db, doc["_id"], LaunchOptions(),
                                                        connections=2, audience_pages=1)
        self.batch_id = await batches.insert_claimed_batch(
            self.db, doc["_id"], 0, self.customer_ids, [1, None], self.claim, lease_s=30)
        return self

    def job(self, port: int, *, password: str | None = None, claim: str | None = None,
            fresh: bool = True, connections: int = 2, lease_left_s: float | None = 30.0,
            **settings) -> BatchJob:
        """The job as the runner hands it over, with what is left of the lease the
        batch's claim began (`lease_left_s=None`: the job does not say, so the task
        renews first)."""
        update = {"mongodb_db": self.db_name, **settings}
        if password is not None:
            update |= {"smtp_user": "relay", "smtp_password": SecretStr(password)}
        batch = self.sync.batches.find_one({"_id": self.batch_id})
        return BatchJob(
            campaign_id=self.campaign["_id"], batch_id=self.batch_id,
            claim=claim or self.claim, attempt=batch["attempt"],
            customer_ids=batch["customer_ids"],
            runtime=Runtime(SETTINGS.model_copy(update=update),
                            Endpoints(self.mongodb_uri, "127.0.0.1", port), KeyRing.of("k")),
            templates=self.campaign["templates"],
            connections=connections, fresh=fresh,
            lease_left_s=lease_left_s)

    def reclaim(self, claim: str) -> None:
        self.sync.batches.update_one({"_id": self.batch_id}, {"$set": {
            "status": BatchStatus.CLAIMED, "claim": claim,
            "not_before": batches.now() + timedelta(seconds=30)}})


async def test_bad_smtp_login_fails_the_campaign_once(mongodb_uri: str, login_relay) -> None:
    handler, port = login_relay
    batch = await Batch(mongodb_uri, 6).create()
    summary = await run_and_close(batch.job(port, password="wrong"))

    campaign = batch.sync.campaigns.find_one({"_id": batch.campaign["_id"]})
    assert campaign["status"] == "failed"
    assert campaign["failure_reason"].startswith("SMTP authentication failed")
    assert "wrong" not in campaign["failure_reason"]
    # No delivery failed or spent an attempt: the whole batch is back to pending.
    assert batch.sync.deliveries.count_documents({}) == 0
    stored = batch.sync.batches.find_one({"_id": batch.batch_id})
    assert (stored["status"], sorted(stored["customer_ids"]), stored["attempt"]) == (
        "pending", batch.customer_ids, 0)
    assert handler.total == 0 and summary.stopped == "auth"


async def test_right_login_sends_and_a_retried_task_sends_nothing_again(
        mongodb_uri: str, login_relay) -> None:
    """Ray retries the task of a batch claimed before (not a fresh one): the rerun
    reads what is recorded and sends none of it again."""
    handler, port = login_relay
    batch = await Batch(mongodb_uri, 5).create()
    job = batch.job(port, password="right", fresh=False)
    first = await run_and_close(job)
    again = await run_and_close(job)  # what Ray does when it retries a task: same claim

    assert first.counts == {"sent": 5} and handler.total == 5
    assert again.claimed == 0 and again.counts == {} and handler.total == 5
    assert batch.sync.batches.find_one({"_id": batch.batch_id})["status"] == "done"
    sent = list(batch.sync.deliveries.find({}))
    assert len(sent) == 5 and {d["status"] for d in sent} == {"sent"}
    assert {d["attempts"] for d in sent} == {1}


async def test_a_task_that_starts_after_its_claim_was_given_back_sends_nothing(
        mongodb_uri: str, open_relay) -> None:
    """A task that starts late (its lease half gone, or its job does not say when it
    began) renews first; the claim is no longer its own, so it stops unsent."""
    handler, port = open_relay
    batch = await Batch(mongodb_uri, 3).create()
    batch.reclaim("claim-2")  # the sweep gave it back, and it was claimed again
    late = await run_and_close(batch.job(port, claim="claim-1", lease_left_s=1))  # half gone
    unknown = await run_and_close(batch.job(port, claim="claim-1", lease_left_s=None))

    assert late.stopped == unknown.stopped == "lost" and handler.total == 0
    stored = batch.sync.batches.find_one({"_id": batch.batch_id})
    assert stored["claim"] == "claim-2" and "worker" not in stored
    on_time = await run_and_close(batch.job(port, claim="claim-2", lease_left_s=None))
    assert on_time.counts == {"sent": 3} and handler.total == 3


async def test_a_batch_whose_task_died_is_sent_again_without_repeats(
        mongodb_uri: str, open_relay) -> None:
    """A worker died after recording 3 of 7 outcomes of a fresh batch: the runner
    claims the batch again, and that run sends only the 4 without a record."""
    handler, port = open_relay
    batch = await Batch(mongodb_uri, 7).create()
    batch.reclaim("claim-2")
    job = batch.job(port, claim="claim-2", fresh=False)
    recorded = batch.customer_ids[:3]
    batch.sync.deliveries.insert_many([
        {"_id": delivery_id(job.campaign_id, cid), "campaign_id": job.campaign_id,
         "customer_id": cid, "status": "sent", "attempts": 1} for cid in recorded])
    summary = await run_and_close(job)

    assert summary.counts == {"sent": 4}
    assert handler.count_by_recipient("send.example") == {
        f"{cid}@send.example": 1 for cid in batch.customer_ids[3:]}
    assert batch.sync.deliveries.count_documents({"status": "sent"}) == 7


async def test_a_stopped_batch_keeps_what_it_did_not_send(mongodb_uri: str, open_relay) -> None:
    """Requeued (a new claim) while the first task waits for a token: the first task
    stops at its next renewal, and the new claim sends the rest, each message once."""
    handler, port = open_relay
    batch = await Batch(mongodb_uri, 5).create()
    job = batch.job(port, connections=1, send_lease_s=3.0, lease_left_s=3.0)
    job.limits = {"relay": 1.0}
    reserved = 0

    async def slow_after_the_first(limits: dict, n: float, heard: dict | None) -> float:
        nonlocal reserved
        reserved += 1
        if reserved == 2:  # the first went out: the runner's sweep takes the batch back
            batch.sync.batches.update_one({"_id": batch.batch_id}, {"$set": {
                "status": "pending", "claim": None}})
        return 0.0 if reserved == 1 else 30.0

    summary = await run_and_close(job, reserve=slow_after_the_first)
    assert handler.total == 1 and summary.counts == {"sent": 1}
    assert summary.stopped == "lease lost"

    batch.reclaim("claim-2")
    rest = await run_and_close(batch.job(port, claim="claim-2", fresh=False))
    assert rest.counts == {"sent": 4}
    assert handler.count_by_recipient("send.example") == {
        f"{cid}@send.example": 1 for cid in batch.customer_ids}


async def test_temporary_failures_come_back_as_the_next_attempt(mongodb_uri: str,
                                                               open_relay) -> None:
    handler, port = open_relay
    batch = await Batch(mongodb_uri, 4).create()
    batch.sync.customers.update_one({"_id": "c001"}, {"$set": {
        "email": "c001+tempfail@send.example"}})
    batch.sync.customers.update_one({"_id": "c002"}, {"$set": {
        "email": "c002+reject@send.example"}})
    first = await run_and_close(batch.job(port))
    assert first.counts == {"sent": 2, "failed": 1} and first.retries == 1
    stored = batch.sync.batches.find_one({"_id": batch.batch_id})
    assert (stored["status"], stored["customer_ids"], stored["attempt"]) == (
        "pending", ["c001"], 1)
    assert first.due_in_s is not None

    batch.reclaim("claim-2")
    second = await run_and_close(batch.job(port, claim="claim-2", fresh=False))
    assert second.counts == {"sent": 1}
    delivery = batch.sync.deliveries.find_one({"customer_id": "c001"})
    assert (delivery["status"], delivery["attempts"]) == ("sent", 2)
    assert batch.sync.batches.find_one({"_id": batch.batch_id})["status"] == "done"


async def test_a_dead_mailbox_and_too_many_soft_bounces_go_on_the_list(mongodb_uri: str,
                                                                       open_relay) -> None:
    """550 5.1.1 at send time suppresses the address for email at once; a send that ends
    dead counts a soft bounce, and at the limit the address is suppressed too. The next
    batch to them skips both, without a command per message."""
    handler, port = open_relay
    batch = await Batch(mongodb_uri, 4).create()
    batch.sync.customers.update_one({"_id": "c001"}, {"$set": {
        "email": "c001+tempfail9@send.example"}})
    batch.sync.customers.update_one({"_id": "c002"}, {"$set": {
        "email": "c002+reject@send.example"}})
    first = await run_and_close(batch.job(port, send_max_attempts=1, soft_bounce_limit=1))
    assert first.counts == {"sent": 2, "failed": 1, "dead": 1}
    listed = {d["_id"]: d for d in batch.sync.suppressions.find()}
    assert set(listed) == {"email:c001+tempfail9@send.example",
                           "email:c002+reject@send.example"}
    assert listed["email:c002+reject@send.example"]["reason"] == "hard-bounce"
    assert listed["email:c002+reject@send.example"]["detail"]["status"] == "5.1.1"
    assert listed["email:c001+tempfail9@send.example"]["reason"] == "soft-bounces"
    for cid in ("c001", "c002"):
        assert batch.sync.customers.find_one({"_id": cid})["opted_out"] == ["email"]

    # The next campaign's batch, its customers read before the suppression: the batch's
    # one read of whose consent changed since finds them.
    again = await Batch(mongodb_uri, 0).create_on(batch)
    job = again.job(port)
    job.customers = [{**c, "opted_out": []} for c in batch.sync.customers.find()]
    job.customers_read_at = datetime.now(UTC) - timedelta(minutes=5)
    second = await run_and_close(job)
    assert second.counts == {"sent": 2, "skipped": 2}
    skipped = {d["customer_id"]: d["last_error"] for d in again.sync.deliveries.find(
        {"campaign_id": again.campaign["_id"], "status": "skipped"})}
    assert skipped == {"c001": "suppressed for email", "c002": "suppressed for email"}
    assert handler.count_by_recipient("send.example")["c000@send.example"] == 2


async def test_recipients_in_three_zones_are_sent_only_inside_their_window(
        mongodb_uri: str, open_relay) -> None:
    """08:00-21:00 local, with the wall clock injected: at 22:30 UTC only São Paulo
    (19:30) is inside; the batch closes with Tokyo (07:30) and Lisbon (22:30) pending,
    due when Tokyo opens (no task waits: the runner's heap holds the time), then Tokyo
    at 23:00 UTC, then Lisbon at 08:00 UTC. Each gets one message; waiting is no attempt."""
    handler, port = open_relay
    batch = await Batch(mongodb_uri, 3).create()
    zones = {"c000": {"phone": "+5511987650005"}, "c001": {"phone": "+81312345678"},
             "c002": {"timezone": "Europe/Lisbon"}}
    for cid, fields in zones.items():
        batch.sync.customers.update_one({"_id": cid}, {"$set": fields})
    windows = (Window.parse("08:00-21:00"),)
    at = datetime(2026, 12, 7, 22, 30, tzinfo=UTC)

    def job(claim: str, fresh: bool) -> BatchJob:
        made = batch.job(port, claim=claim, fresh=fresh)
        made.windows = windows
        return made

    first = await run_and_close(job("claim-1", True), wall_clock=lambda: at)
    assert first.counts == {"sent": 1} and first.waiting == 2
    assert first.due_in_s == 1800  # Tokyo's 08:00
    stored = batch.sync.batches.find_one({"_id": batch.batch_id})
    assert (stored["status"], sorted(stored["customer_ids"]), stored["attempt"],
            stored["claim"]) == ("pending", ["c001", "c002"], 0, None)
    now = batch.sync.command("serverStatus")["localTime"].replace(tzinfo=UTC)
    assert timedelta(minutes=29) < stored["not_before"].replace(tzinfo=UTC) - now \
        <= timedelta(minutes=30)

    batch.reclaim("claim-2")
    second = await run_and_close(job("claim-2", False),
                                 wall_clock=lambda: at + timedelta(minutes=30))
    assert second.counts == {"sent": 1} and second.waiting == 1
    assert second.due_in_s == 9 * 3600  # Lisbon's 08:00, at 08:00 UTC
    batch.reclaim("claim-3")
    third = await run_and_close(job("claim-3", False),
                                wall_clock=lambda: at + timedelta(hours=9, minutes=30))
    assert third.counts == {"sent": 1} and third.waiting == 0
    assert batch.sync.batches.find_one({"_id": batch.batch_id})["status"] == "done"
    assert handler.count_by_recipient("send.example") == {
        f"{cid}@send.example": 1 for cid in zones}
    assert {d["attempts"] for d in batch.sync.deliveries.find()} == {1}


async def test_a_relay_that_says_slow_down_is_sent_at_a_rate_it_takes(mongodb_uri: str
                                                                       ) -> None:
    """A relay answering 421 above 20 messages/s, and the operator's ceiling at 60/s:
    every recipient is sent once and none fails, the "slow down" answers defer their
    message (no attempt counted), and the route's rate comes down near the relay's."""
    handler = SinkHandler(None, throttle_per_s=20)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        batch = await Batch(mongodb_uri, 120).create()
        limits = RateLimits()

        async def reserve(wanted: dict, n: float, heard: dict | None = None) -> float:
            return limits.reserve(wanted, n, heard)  # as the rate limiter actor does

        job = batch.job(port, connections=4, relay_rate_limit_per_s=60)
        job.limits = {"relay": 60}
        summary = await run_and_close(job, reserve=reserve)
    finally:
        controller.stop()
    assert summary.counts == {"sent": 120} and summary.retries == 0
    assert summary.deferred == handler.throttled > 0
    assert handler.count_by_recipient("send.example") == {
        f"{cid}@send.example": 1 for cid in batch.customer_ids}
    assert {d["attempts"] for d in batch.sync.deliveries.find()} == {1}
    route = limits.routes()["relay"]
    assert route["cuts"] >= 1 and 8 <= route["rate_per_s"] <= 32, route


class StopsAccepting(SinkHandler):
    """A relay that takes `accept` messages, then goes away: the connection of the next
    one is dropped before it is taken, and its port refuses connections from then on."""

    def __init__(self, accept: int) -> None:
        super().__init__(None)
        self.accept = accept
        self.controller: Controller | None = None
        self.gone = threading.Event()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.total >= self.accept:
            if not self.gone.is_set():
                self.gone.set()
                threading.Thread(target=self.controller.stop).start()  # (not on its loop)
            server.transport.close()
            return "421 4.3.2 Shutting down"  # (never read: the connection is gone)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


async def test_a_relay_that_stops_accepting_mid_campaign_leaves_its_share_to_the_other(
        mongodb_uri: str) -> None:
    """Two relays, the main one carrying nearly all (weight 100 to 1), goes away after
    some 40 messages: the
    batch completes over the other, every recipient sent exactly once (nothing was in
    flight: the main relay took no message it did not answer), nothing failed, and the
    worker said the main relay was out."""
    main = StopsAccepting(accept=40)
    main_port, backup_port = free_port(), free_port()
    main.controller = Controller(main, hostname="127.0.0.1", port=main_port)
    backup = SinkHandler(None)
    backup_controller = Controller(backup, hostname="127.0.0.1", port=backup_port)
    main.controller.start()
    backup_controller.start()
    events: list[tuple] = []
    try:
        batch = await Batch(mongodb_uri, 200).create()
        job = batch.job(main_port, connections=4, smtp_weight=100, route_breaker_failures=2,
                        smtp_routes=[FurtherRelay(name="backup", host="127.0.0.1",
                                                  port=backup_port)])
        summary = await run_and_close(job, report=lambda *event: events.append(event))
    finally:
        backup_controller.stop()
        if not main.gone.is_set():
            main.controller.stop()
    assert main.gone.is_set() and 40 <= main.total < 200  # (RCPTs in flight at 40 went on)
    assert summary.counts == {"sent": 200} and summary.retries == 0
    assert summary.rerouted >= 1 and summary.stopped is None
    received = Counter(main.count_by_recipient("send.example"))
    received.update(backup.count_by_recipient("send.example"))
    assert received == {f"{cid}@send.example": 1 for cid in batch.customer_ids}
    assert {d["attempts"] for d in batch.sync.deliveries.find()} == {1}
    assert [(route, up) for route, up, _ in events] == [("relay", False)]


async def test_a_fallback_rule_sends_each_recipient_one_message_on_the_first_channel_that_reaches(
        mongodb_uri: str, open_relay) -> None:
    """Telegram, then SMS, then email: a linked chat gets Telegram; a phone without one,
    SMS; an email only, email; one suppressed for Telegram, the next that reaches them;
    one nothing reaches is skipped with Telegram's reason; one who prefers SMS (and the
    campaign lets customers choose) gets SMS. One message each, and each delivery says
    which channel carried it."""
    handler, port = open_relay
    bot_api, smsc = TelegramApi(), Smsc(receipt_delay_s=60)
    bot_api.start()
    smsc_host, smsc_port = smsc.start()
    try:
        batch = await Batch(mongodb_uri, 6).create()
        by_telegram, by_sms, by_email, suppressed, nobody, chooser = batch.customer_ids
        bot_api.chat(4242).opened = True
        batch.sync.customers.update_one({"_id": by_telegram}, {"$set": {
            "telegram": {"chat_id": "4242"}, "phone": "+5511900005555"}})
        batch.sync.customers.update_one({"_id": by_sms}, {"$set": {"phone": "+5511900006666"}})
        batch.sync.customers.update_one({"_id": suppressed}, {"$set": {
            "telegram": {"chat_id": "4343"}, "opted_out": ["telegram"]}})
        batch.sync.customers.update_one({"_id": nobody}, {"$set": {"opted_out": ["email"]}})
        batch.sync.customers.update_one({"_id": chooser}, {"$set": {  # reachable on all
            "telegram": {"chat_id": "4242"}, "phone": "+5511900007777",
            "vars": {"preferred_channel": "SMS"}}})
        job = batch.job(port, connections=3)
        job = replace(job, channel="telegram", fallback=(("sms", ()), ("email", ())),
                      customers_choice=True,
                      runtime=replace(job.runtime, endpoints=replace(
                          job.runtime.endpoints, smpp_host=smsc_host, smpp_port=smsc_port,
                          telegram_api=bot_api.url)))
        summary = await run_and_close(job)
    finally:
        bot_api.stop()
        smsc.stop()
    assert summary.counts == {"sent": 5, "skipped": 1}, summary.counts
    assert [m["text"] for m in bot_api.sent(4242)] == ["Plan Basic"]  # not the chooser's
    assert smsc.count_by_number() == {"5511900006666": 1, "5511900007777": 1}
    assert handler.count_by_recipient("send.example") == {
        f"{by_email}@send.example": 1, f"{suppressed}@send.example": 1}
    carried = {d["customer_id"]: (d["status"], d.get("channel"))
               for d in batch.sync.deliveries.find()}
    assert carried == {by_telegram: ("sent", "telegram"), by_sms: ("sent", "sms"),
                       by_email: ("sent", "email"), suppressed: ("sent", "email"),
                       nobody: ("skipped", "telegram"), chooser: ("sent", "sms")}
    reason = batch.sync.deliveries.find_one({"customer_id": nobody})["last_error"]
    assert reason == "no Telegram chat linked"


class CommandCounter(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[str] = []
        self.collections: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name not in ("hello", "isMaster", "ismaster", "endSessions", "ping"):
            self.commands.append(event.command_name)
            if event.command_name == "bulkWrite":  # across collections: which ones
                self.collections.append(",".join(sorted(
                    {ns["ns"].split(".", 1)[1] for ns in event.command["nsInfo"]})))
            else:
                self.collections.append(event.command.get(event.command_name))

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


async def test_one_batch_of_100_costs_the_database_a_handful_of_commands(
        mongodb_uri: str, open_relay) -> None:
    """<= 0.1 commands per message: the task's commands, counted by PyMongo's command
    monitoring, plus the runner's share at most (insert the batch, one audience page
    read, one write of counters, roll-ups and the batch's close, were it alone in its
    round: done here as the runner does it, and counted)."""
    handler, port = open_relay
    batch = await Batch(mongodb_uri, 100).create()
    counter = CommandCounter()
    monitoring.register(counter)  # applies to clients created from here on
    uri = batch.mongodb_uri + "&appname=count-commands"  # a fresh client, listened to
    job = batch.job(port, connections=4)
    job.customers = list(batch.sync.customers.find({}, SEND_FIELDS).sort("_id", 1))  # the page
    job.customers_read_at = batches.now()
    job.runtime = replace(job.runtime, endpoints=Endpoints(uri, "127.0.0.1", port))
    job.listeners = None  # no runner to say who listens: the task reads it
    started = time.monotonic()
    summary = await run_batch(job)  # the runner writes its close
    # A batch that runs long (a loaded machine) writes its own roll-ups every
    # ROLLUP_EVERY_S, and renews its lease every third of it: allowed for, the count
    # stays exact.
    ran_s = time.monotonic() - started
    periodic = int(ran_s // ROLLUP_EVERY_S) + int(ran_s // (job.settings.send_lease_s / 3))

    assert summary.counts == {"sent": 100} and handler.total == 100
    print(f"one batch of 100: task commands {counter.commands} on {counter.collections}")
    flushes = counter.collections.count("deliveries")
    assert flushes <= 100 // job.settings.send_flush_every + 1
    # The batch is left to the runner to close (only lease renewals touch it here).
    assert counter.collections.count("batches") == int(
        ran_s // (job.settings.send_lease_s / 3))
    assert batch.sync.batches.find_one({"_id": batch.batch_id})["status"] == "claimed"
    assert summary.close.remaining == []
    # The roll-up increments go back to the runner, which writes them with the others
    # finished in its round.
    assert counter.collections.count("rollups") <= periodic
    assert summary.rollups.docs()[rollups.campaign_rollup_id(
        job.campaign_id, rollups.day_of(batches.now()))]["counts"] == {"sent": 100}
    # Who listens for webhook events: read at most once per Subscriptions.ttl_s by a
    # process (here: the first batch on this database), not per batch.
    listeners = counter.collections.count("webhooks")
    assert listeners <= 1 + int((time.monotonic() - started) // Subscriptions().ttl_s)
    task = len(counter.commands) - periodic - listeners
    # The runner's write for this task: counters, roll-ups and the close, one command.
    runner = Writes(database(uri, batch.db_name))
    rounds.stage_round(runner, job.campaign_id, {"$inc": summary.increments()},
                       summary.rollups, [summary.close])
    await runner.apply()
    assert len(counter.commands) - periodic - listeners == task + 1
    assert batch.sync.batches.find_one({"_id": batch.batch_id})["status"] == "done"
    assert batch.sync.campaigns.find_one({"_id": job.campaign_id})["counts"]["sent"] == 100
    runner_share = 1 + 1 + 1  # the batch's insert, a page read at most, that write
    assert task + runner_share <= 10, counter.commands


async def test_a_batch_tells_when_its_last_recipient_is_taken(mongodb_uri: str,
                                                              open_relay) -> None:
    """The drain notice (the runner starts the next batch on it) comes once, when the
    last message is taken: over one connection, after the others reached the relay
    and before it did."""
    handler, port = open_relay
    batch = await Batch(mongodb_uri, 5).create()
    relayed_at_notice: list[int] = []
    summary = await run_and_close(batch.job(port, connections=1),
                              on_draining=lambda: relayed_at_notice.append(handler.total))
    assert summary.counts == {"sent": 5} and handler.total == 5
    assert relayed_at_notice == [4]


async def test_a_long_batch_leaves_its_last_roll_ups_to_the_runner(
        mongodb_uri: str, open_relay, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch writes its own roll-ups only while it runs (every ROLLUP_EVERY_S, here
    at every flush); those of its last flush go back in the summary, which the runner
    writes with the others of its round, so no batch ends on a write of its own."""
    from app.campaigns import outcomes
    handler, port = open_relay
    batch = await Batch(mongodb_uri, 12).create()
    monkeypatch.setattr(outcomes, "ROLLUP_EVERY_S", 0.0)
    # Four at a time, over one connection; the last four wait for the close.
    summary = await run_and_close(batch.job(port, connections=1, send_flush_every=4,
                                            send_flush_s=60.0))
    assert summary.counts == {"sent": 12} and handler.total == 12

    written = sum(doc.get("counts", {}).get("sent", 0) for doc in batch.sync.rollups.find(
        {"_id": rollups.campaign_rollup_id(batch.campaign["_id"],
                                           rollups.day_of(batches.now()))}))
    returned = summary.rollups.docs()[rollups.campaign_rollup_id(
        batch.campaign["_id"], rollups.day_of(batches.now()))]["counts"]["sent"]
    assert returned >= 1 and written + returned == 12


async def test_an_unsubscribe_after_the_page_was_read_is_respected(
        mongodb_uri: str, open_relay) -> None:
    """The job carries the customers as the runner read them; one unsubscribes before
    the task runs: the task skips them, and reads no customer document itself."""
    from app.audience.customers import set_unsubscribed

    handler, port = open_relay
    batch = await Batch(mongodb_uri, 4).create()
    job = batch.job(port)
    job.customers = list(batch.sync.customers.find({}, SEND_FIELDS).sort("_id", 1))
    job.customers_read_at = batches.now()
    assert await set_unsubscribed(batch.db, "c002", via="link")
    summary = await run_and_close(job)

    assert summary.counts == {"sent": 3, "skipped": 1}
    assert "c002@send.example" not in handler.count_by_recipient("send.example")
    assert batch.sync.deliveries.find_one({"customer_id": "c002"})["status"] == "skipped"


def _plans(plan: dict) -> list[str]:
    stages = [plan.get("stage", "")]
    for key in ("inputStage", "queryPlan"):
        if key in plan:
            stages += _plans(plan[key])
    for child in plan.get("inputStages", []):
        stages += _plans(child)
    return stages


async def test_every_send_path_query_uses_an_index(mongodb_uri: str) -> None:
    batch = await Batch(mongodb_uri, 3).create()
    cid, db = batch.campaign["_id"], batch.sync
    ids = [delivery_id(cid, c) for c in batch.customer_ids]
    shapes = {
        "batches": [
            ({"_id": batch.batch_id, "claim": "x"}, None),  # renew, close
            ({"_id": batch.batch_id, "status": "pending"}, None),  # claim a pending one
            ({"campaign_id": cid, "status": {"$in": ["pending", "claimed"]}}, None),  # open
            ({"campaign_id": cid, "status": "claimed",
              "not_before": {"$lt": batches.now()}}, None),  # expired leases
            ({"campaign_id": cid}, "seq"),  # the newest batch, for a restarted runner
        ],
        "deliveries": [({"_id": {"$in": ids}}, None)],  # what a rerun finds recorded
        "customers": [
            ({"_id": {"$in": batch.customer_ids}}, None),  # the batch's recipients
            ({"unsubscribed_at": {"$gte": batches.now()}}, None),  # unsubscribed since
            (audience_page_query({"tag": "send"}, 5, AUDIENCE_BUCKETS), None),
            (audience_page_query({}, 5, AUDIENCE_BUCKETS), None),
            (audience_page_query({"tag": "send"}, 3, 32), None),  # a shard of 32 buckets
            (audience_page_query({"tag": "send", "plan": "Basic"}, 0, 1), None),
        ],
    }
    for collection, queries in shapes.items():
        for query, sort in queries:
            cursor = db[collection].find(query)
            if sort:
                cursor = cursor.sort(sort, -1).limit(1)
            stages = _plans(cursor.explain()["queryPlanner"]["winningPlan"])
            assert "COLLSCAN" not in stages and "IXSCAN" in stages, (collection, query, stages)
    await asyncio.sleep(0)


@pytest.fixture
def slow_relay():
    """A relay that takes 0.2 s a message, so a batch outlives a short lease."""
    handler = SinkHandler(None, delay_s=0.2)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.mark.parametrize("skew_s", [-60.0, 60.0])
async def test_a_task_cut_off_from_the_database_stops_before_its_batch_is_requeued(
        mongodb_uri: str, slow_relay, monkeypatch, skew_s: float) -> None:
    """A send task whose renewals no longer reach the database (a partition) keeps
    sending only as long as its lease can hold; the runner's sweep gives the batch back
    by the database's clock and a run under a new claim sends the rest: each recipient
    gets one message, whatever the cut-off worker's clock says (skewed a minute)."""
    handler, port = slow_relay
    batch = await Batch(mongodb_uri, 30).create()
    renew = batches.renew_lease

    async def cut_off(db, batch_id: str, claim: str, *args, **kwargs) -> bool:
        if claim == batch.claim:
            raise ConnectionError("the database is on the other side of a partition")
        return await renew(db, batch_id, claim, *args, **kwargs)

    monkeypatch.setattr(batches, "renew_lease", cut_off)
    lease_s = 2.0
    batch.sync.batches.update_one({"_id": batch.batch_id}, [{"$set": {  # a 2 s lease
        "not_before": {"$add": ["$$NOW", round(lease_s * 1000)]}}}])
    cut = asyncio.create_task(run_batch(
        batch.job(port, connections=1, send_lease_s=lease_s, lease_left_s=lease_s),
        clock=lambda: time.monotonic() + skew_s))

    async def sweep() -> list[str]:  # as the runner's sweep does, until the lease lapsed
        while not (requeued := await batches.requeue_expired(batch.db,
                                                               batch.campaign["_id"])):
            await asyncio.sleep(0.1)
        return requeued

    assert await sweep() == [batch.batch_id]
    sent_by_then = handler.total
    first = await cut
    assert handler.total == sent_by_then  # nothing went out after its lease lapsed
    found = await batches.claim_batch(batch.db, batch.batch_id, "claim-2", 30)
    rest = await run_and_close(batch.job(port, claim="claim-2", fresh=False))
    assert first.stopped == "lease lapsed" and 0 < first.counts["sent"] < 30
    assert len(found["customer_ids"]) == 30  # given back whole: its close never came
    assert rest.counts == {"sent": 30 - first.counts["sent"]}
    assert handler.count_by_recipient("send.example") == {
        f"{cid}@send.example": 1 for cid in batch.customer_ids}
    # Its late close is refused by the claim, like anything else it would still write.
    await rounds.record_round(batch.db, batch.campaign["_id"], {}, None, [first.close])
    assert batch.sync.batches.find_one({"_id": batch.batch_id})["status"] == "done"
