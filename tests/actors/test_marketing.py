"""The marketing actor end to end: cooldown, push, restart, idempotency, acceptance."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import ray
import websockets
from pymongo import MongoClient

from actors import registry
from app.channels.email.composer import CODE_SUBJECT
from app.core import rollup_repair
from tests.utils.campaigns import import_audience
from tests.utils.chat import verified_session
from tests.utils.stack import Stack, unique_domain
from tests.utils.waiting import wait_until


def mongo(stack: Stack):
    endpoints = ray.get(stack.services.endpoints.remote())
    return MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db]


def marketing():
    return registry.find(registry.MARKETING)


async def _next_frame(socket, predicate, timeout_s: float = 30) -> dict:
    async with asyncio.timeout(timeout_s):
        while True:
            frame = json.loads(await socket.recv())
            if predicate(frame):
                return frame


def _chat_rollups(db) -> dict[str, int]:
    """The chat roll-ups of the last few days, flattened and summed."""
    since = (datetime.now(UTC) - timedelta(days=2)).date().isoformat()
    return _flat(db.rollups.find({"kind": "chat", "day": {"$gte": since}}))


def _flat(docs) -> dict[str, int]:
    total: dict[str, int] = {}
    for doc in docs:
        for key, value in doc.items():
            for sub, n in (value.items() if isinstance(value, dict) else [("", value)]):
                if isinstance(n, int) and key not in ("_id", "kind", "day"):
                    name = f"{key}.{sub}" if sub else key
                    total[name] = total.get(name, 0) + n
    return {k: n for k, n in total.items() if n}


def _session(stack: Stack, **contact) -> dict:
    with stack.client(admin=False) as client:
        return client.post("/chat/api/sessions", json=contact).json()


async def test_refusal_brings_a_counter_offer_after_the_cooldown(stack: Stack, api) -> None:
    domain = unique_domain("offer")
    api.post("/api/customers/generate?wait=true",
             json={"count": 1, "domain": domain, "tag": domain})
    db = mongo(stack)
    customer = db.customers.find_one({"tags": domain})
    rollups_before = _chat_rollups(db)
    session = verified_session(stack, api, customer["email"])
    url = stack.base_url.replace("http", "ws") + f"/chat/ws/{session['session_id']}"

    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"token": session["token"]}))
        for answer in ("1", "1", "2"):  # client, upgrade, refuse Turbo
            await socket.send(json.dumps({"text": answer}))
        await _next_frame(socket, lambda f: f.get("message", {}).get("node") == "turbo_refused")
        # Nothing polls from here on: the offer must be pushed.
        offer_frame = await _next_frame(socket, lambda f: f.get("message", {}).get("role")
                                        == "marketing")
        message = offer_frame["message"]
        assert message["kind"] == "offer" and message["options"] == ["Accept", "No thanks"]
        assert "20% off the Turbo plan" in message["text"]

        offer = wait_until(lambda: db.offers.find_one({"_id": message["offer"]["id"],
                                                       "status": "sent"}), what="sent")
        assert offer["emailed"] is True
        assert offer["customer_id"] == customer["_id"]
        assert (offer["fire_at"] - offer["created_at"]).total_seconds() == 1.0  # the cooldown
        assert offer["sent_at"] >= offer["fire_at"]

        await socket.send(json.dumps({"text": "1"}))  # Accept
        done = await _next_frame(socket, lambda f: f.get("message", {}).get("node")
                                 == "counter_accepted")
        assert "accepted" in done["message"]["text"].lower()

    conversion = wait_until(lambda: db.events.find_one({"type": "conversion",
                                                        "offer_id": offer["_id"]}),
                            what="the conversion")
    assert db.offers.find_one({"_id": offer["_id"]})["status"] == "accepted"
    assert db.customers.find_one({"_id": customer["_id"]})["plan"] == "Turbo"
    assert conversion["monthly_value"] == round(129.90 * 0.8, 2)
    assert conversion["source"] == "counter_offer"

    mail = api.get("/api/outbox", params={"to": customer["email"]}).json()["messages"]
    assert [m["subject"] for m in mail] == ["A special offer for you", CODE_SUBJECT]

    overview = api.get("/api/marketing").json()
    assert overview["counts"]["accepted"] >= 1 and 0 < overview["conversion_rate"] <= 1

    # A second refusal within the window makes no new offer.
    with stack.client(admin=False) as client:
        headers = {"Authorization": f"Bearer {session['token']}"}
        base = f"/chat/api/sessions/{session['session_id']}/messages"
        client.delete(base, headers=headers)
        for answer in ("1", "1", "2"):
            client.post(base, json={"text": answer}, headers=headers)
    wait_until(lambda: db.events.count_documents(
        {"session_id": session["session_id"], "type": "offer_refused", "delivered": True}) == 2,
        what="the second refusal to reach the actor")
    assert db.offers.count_documents({"customer_id": customer["_id"]}) == 1

    # The chat roll-ups moved by exactly what a recount of this session gives: created,
    # moved by every turn (replica and marketing actor), events and the offer counted.
    def recount() -> dict[str, int]:
        sid = session["session_id"]
        offers = db.offers.find({"customer_id": customer["_id"]}).to_list()
        return _flat(rollup_repair.fold_chat(
            db.chat_sessions.find({"_id": sid}).to_list(),
            db.events.find({"session_id": sid}).to_list(),
            [o for o in offers if o.get("sent_at")],
            [o for o in offers if o.get("accepted_at")]).values())

    def moved() -> dict[str, int]:
        after = _chat_rollups(db)
        return {k: after.get(k, 0) - rollups_before.get(k, 0)
                for k in set(after) | set(rollups_before)
                if after.get(k, 0) != rollups_before.get(k, 0)}

    expected = recount()
    assert expected["sessions"] == 1 and expected["events.offer_refused"] == 2
    assert expected["offers_sent"] == 1 and expected["accepted"] == 1
    with contextlib.suppress(AssertionError):  # the replica flushes every second
        wait_until(lambda: moved() == recount(), what="the chat roll-ups")
    assert moved() == recount()


def _events(n: int, prefix: str) -> list[dict]:
    return [{"_id": f"{prefix}:{i}", "type": "offer_refused",
             "session_id": f"{prefix}-session-{i}", "customer_id": None} for i in range(n)]


def test_actor_killed_with_fifty_pending_fires_each_once(stack: Stack) -> None:
    db = mongo(stack)
    sessions = [_session(stack) for _ in range(50)]
    events = [{"_id": f"kill-{uuid.uuid4().hex}", "type": "offer_refused",
               "session_id": s["session_id"], "customer_id": None} for s in sessions]
    actor = marketing()
    results = ray.get([actor.handle_refusal.remote(e, delay_s=3.0) for e in events])
    assert all(r["scheduled"] for r in results)

    ray.kill(actor, no_restart=False)
    ids = [e["_id"] for e in events]
    wait_until(lambda: db.offers.count_documents({"_id": {"$in": ids}, "status": "sent"}) == 50,
               timeout_s=90, what="all 50 offers to fire after the restart")
    for s in sessions:
        offers = db.messages.count_documents({"session_id": s["session_id"],
                                              "role": "marketing"})
        assert offers == 1
    time.sleep(1)  # a second life must not fire them again either
    ray.kill(marketing(), no_restart=False)
    ray.get(marketing().stats.remote())
    for s in sessions:
        assert db.messages.count_documents({"session_id": s["session_id"],
                                            "role": "marketing"}) == 1


def test_same_event_twice_is_one_offer_and_a_thousand_are_a_thousand(stack: Stack) -> None:
    db = mongo(stack)
    actor = marketing()
    [event] = _events(1, f"dup-{uuid.uuid4().hex[:6]}")
    first, second = ray.get([actor.handle_refusal.remote(event, delay_s=3600),
                             actor.handle_refusal.remote(event, delay_s=3600)])
    assert sorted([first["scheduled"], second["scheduled"]]) == [False, True]
    assert db.offers.count_documents({"_id": event["_id"]}) == 1

    prefix = f"bulk-{uuid.uuid4().hex[:6]}"
    results = ray.get([actor.handle_refusal.remote(e, delay_s=3600)
                       for e in _events(1000, prefix)])
    assert sum(r["scheduled"] for r in results) == 1000
    assert db.offers.count_documents({"_id": {"$regex": f"^{prefix}:"}}) == 1000


def test_no_offer_for_unsubscribed_customers(stack: Stack, api) -> None:
    domain = unique_domain("nooffer")
    api.post("/api/customers/generate?wait=true",
             json={"count": 1, "domain": domain, "tag": domain})
    db = mongo(stack)
    customer = db.customers.find_one({"tags": domain})
    db.customers.update_one({"_id": customer["_id"]}, {"$set": {"unsubscribed": True}})
    result = ray.get(marketing().handle_refusal.remote(
        {"_id": f"unsub-{uuid.uuid4().hex}", "type": "offer_refused",
         "session_id": "none", "customer_id": customer["_id"]}))
    assert result == {"scheduled": False, "reason": "customer unsubscribed", "offer_id": None}


def _customer_offered(stack: Stack, api, email: str, delay_s: float) -> tuple[dict, str]:
    """A customer with this email who refused in a session: its offer's id."""
    domain = email.split("@", 1)[1]
    import_audience(api, [email], tag=domain)
    customer = mongo(stack).customers.find_one({"email": email})
    event_id = f"mail-{uuid.uuid4().hex}"
    result = ray.get(marketing().handle_refusal.remote(
        {"_id": event_id, "type": "offer_refused", "session_id": _session(stack)["session_id"],
         "customer_id": customer["_id"]}, delay_s=delay_s))
    assert result["scheduled"], result
    return customer, event_id


def test_a_counter_offer_email_that_fails_transiently_is_sent_on_a_retry(
        stack: Stack, api) -> None:
    email = f"later+tempfail@{unique_domain('offer-retry')}"  # the relay says 451 once
    _customer, offer_id = _customer_offered(stack, api, email, delay_s=0.0)
    offer = wait_until(lambda: mongo(stack).offers.find_one({"_id": offer_id,
                                                             "emailed": True}),
                       60, "the offer emailed on its retry")
    assert "email_after" not in offer  # no further try waits
    mail = api.get("/api/outbox", params={"to": email}).json()["messages"]
    assert [m["subject"] for m in mail] == ["A special offer for you"]


def test_a_customer_who_unsubscribes_before_the_offer_fires_is_not_emailed(
        stack: Stack, api) -> None:
    email = f"changed-mind@{unique_domain('offer-unsub')}"
    customer, offer_id = _customer_offered(stack, api, email, delay_s=2.0)
    mongo(stack).customers.update_one({"_id": customer["_id"]},
                                      {"$set": {"unsubscribed": True}})
    offer = wait_until(lambda: mongo(stack).offers.find_one({"_id": offer_id,
                                                             "status": "sent"}),
                       60, "the offer fired (in the chat)")
    assert offer["emailed"] is False
    assert api.get("/api/outbox", params={"to": email}).json()["matched"] == 0


def test_offers_due_together_fire_as_one_batch(stack: Stack) -> None:
    """Thirty overdue offers when the actor (re)starts: one batch, a handful of database
    commands for all of them (the profiler counts those naming an offer or session),
    each counter-offer in its inbox once."""
    db = mongo(stack)
    sessions = [_session(stack)["session_id"] for _ in range(30)]
    prefix = f"batch-{uuid.uuid4().hex[:6]}"
    due = datetime.now(UTC) - timedelta(seconds=1)
    db.offers.insert_many([{
        "_id": f"{prefix}:{n}", "who": f"session:{s}", "customer_id": None, "session_id": s,
        "email": None, "plan": "Turbo", "discount_pct": 20.0, "text": "20% off Turbo.",
        "status": "scheduled", "created_at": due, "fire_at": due,
        "expires_at": due + timedelta(days=7)} for n, s in enumerate(sessions)])
    ids = [f"{prefix}:{n}" for n in range(30)]

    def named() -> list[dict]:
        return [p for p in db.system.profile.find({"op": {"$in": ["insert", "update", "query"]}})
                if p.get("ns") != f"{db.name}.system.profile"
                and any(x in str(p.get("command")) for x in (prefix, sessions[0]))]
    db.command("profile", 2)
    try:
        ray.kill(marketing(), no_restart=False)  # it reloads them, all due at once
        wait_until(lambda: db.offers.count_documents({"_id": {"$in": ids},
                                                      "status": "sent"}) == 30,
                   timeout_s=90, what="the thirty offers to fire")
        # A command's profile entry is written after it answers, and only while profiling
        # is on: wait for the entry of the write that marked them sent.
        wait_until(lambda: any(p["op"] == "update" and "'sent'" in str(p["command"])
                               for p in named()), what="the 'sent' write in the profile")
    finally:
        db.command("profile", 0)
    stats = ray.get(marketing().stats.remote())
    assert stats["fired"] == 30 and stats["batches"] == 1
    entries = named()
    assert len(entries) <= 6, [(p["op"], p["ns"]) for p in entries]
    for session_id in sessions:
        assert db.messages.count_documents({"session_id": session_id,
                                            "role": "marketing"}) == 1
    # The overview's counters (recounted at the restart, then moved by the batch) are
    # what the offers say.
    counted = db.counters.find_one({"_id": "marketing-offers"})["offers"]
    assert counted == {status: db.offers.count_documents({"status": status})
                       for status in ("scheduled", "firing", "sent", "accepted", "expired")}


async def test_preferring_the_chat_mails_only_the_offline_customer_after_the_wait(
        stack: Stack, api) -> None:
    """`marketing_prefer_live`: a marketing actor of the test's own with the preference
    on and a 1 s wait, over the shared chat hub, database and sink."""
    from actors.marketing import MarketingActor
    from app.core.runtime import Runtime
    from app.core.signing_keys import KeyRing

    domain = unique_domain("live")
    api.post("/api/customers/generate?wait=true",
             json={"count": 2, "domain": domain, "tag": domain})
    db = mongo(stack)
    here, away = list(db.customers.find({"tags": domain}))
    endpoints = await stack.services.endpoints.remote()
    settings = stack.settings.model_copy(update={"marketing_prefer_live": True,
                                                 "marketing_email_wait_s": 1.0})
    actor = MarketingActor.remote(Runtime.build(settings, endpoints, KeyRing.of("k")))
    live, offline = _session(stack), _session(stack)  # the events below name the customers
    hub = registry.find(registry.CHAT_HUB)
    url = stack.base_url.replace("http", "ws") + f"/chat/ws/{live['session_id']}"
    try:
        async with websockets.connect(url) as socket:
            await socket.send(json.dumps({"token": live["token"]}))
            wait_until(lambda: ray.get(hub.online.remote([live["session_id"]])), 10,
                       "the socket known to the hub")
            for session, customer in ((live, here), (offline, away)):
                await actor.handle_refusal.remote({
                    "_id": f"refusal-{uuid.uuid4().hex}", "type": "offer_refused",
                    "session_id": session["session_id"], "customer_id": customer["_id"]},
                    0.0)
            pushed = await _next_frame(socket, lambda f: f.get("message", {}).get("role")
                                       == "marketing")
            assert pushed["message"]["kind"] == "offer"
            shown = wait_until(lambda: db.offers.find_one(
                {"session_id": live["session_id"], "status": "sent"}), what="the live offer")
            assert shown["emailed"] is False and "email_after" not in shown
            mailed = wait_until(lambda: db.offers.find_one(
                {"session_id": offline["session_id"], "emailed": True}), 30,
                "the offline customer's email after the wait")
            assert "email_after" not in mailed
            assert (mailed["sent_at"] - mailed["fire_at"]).total_seconds() >= 0
        outbox = {email: api.get("/api/outbox", params={"to": email}).json()["matched"]
                  for email in (here["email"], away["email"])}
        assert outbox == {here["email"]: 0, away["email"]: 1}
    finally:
        ray.kill(actor)
