"""The counter-offer end to end, through the counter-offer journey (`app.marketing.journey`)
and the marketing actor that fires its offers: cooldown, push, restart, idempotency,
acceptance."""

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
from actors.journeys import shard_name
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


def _refuse(api, events: list[dict]) -> dict:
    """Refusals handed to the journeys as the operator's API takes them (the chat's own
    go the same way: `actors.chat_events`)."""
    response = api.post("/api/journeys/events", json={"events": [
        {"type": "offer_refused", **event} for event in events]})
    assert response.status_code == 202, response.text
    return response.json()


def _enrollments(db, **query) -> list[dict]:
    return db.journey_enrollments.find({"key": "counter-offer", **query}).to_list()


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
        [enrolled] = _enrollments(db, customer_id=customer["_id"])
        assert enrolled["session_id"] == session["session_id"]
        assert offer["journey_send"] == f"j|{enrolled['_id']}|{enrolled['version']}|offer|2"
        assert (offer["created_at"] - enrolled["entered_at"]).total_seconds() >= 1.0  # cooldown
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
    left = wait_until(lambda: _enrollments(db, customer_id=customer["_id"], status="done"),
                      what="the journey left, converted")
    assert [e["left"] for e in left] == ["converted"]

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
        what="the second refusal to reach the journey")
    again = wait_until(lambda: db.journey_sends.find_one(
        {"customer_id": customer["_id"], "status": "skipped"}), what="the second time's step")
    assert again["error"] == "already offered within the window"
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


def test_journey_shards_and_the_actor_killed_with_fifty_waiting_offer_each_once(
        stack: Stack, api) -> None:
    """Fifty refusals, then every journey shard and the marketing actor killed at once
    (the cooldown runs out while they are down): after the restarts, one offer in
    each inbox, and a second life of the actor fires none again."""
    db = mongo(stack)
    sessions = [_session(stack) for _ in range(50)]
    _refuse(api, [{"id": f"kill-{uuid.uuid4().hex}", "session_id": s["session_id"]}
                  for s in sessions])
    for n in range(stack.settings.journey_shards):
        ray.kill(registry.find(shard_name(n)), no_restart=False)
    ray.kill(marketing(), no_restart=False)
    ids = [s["session_id"] for s in sessions]
    wait_until(lambda: db.offers.count_documents({"session_id": {"$in": ids},
                                                  "status": "sent"}) == 50,
               timeout_s=90, what="all 50 offers to fire after the restarts")
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
    assert db.offers.count_documents({"session_id": {"$in": ids}}) == 50


def test_same_refusal_twice_is_one_offer_and_two_hundred_are_two_hundred(
        stack: Stack, api) -> None:
    db = mongo(stack)
    session = _session(stack)
    event = {"id": f"dup-{uuid.uuid4().hex}", "session_id": session["session_id"]}
    assert _refuse(api, [event, event]) == {"stored": 1, "repeated": 1}
    assert _refuse(api, [event]) == {"stored": 0, "repeated": 1}
    wait_until(lambda: db.offers.find_one({"session_id": session["session_id"],
                                           "status": "sent"}), what="the offer")
    assert len(_enrollments(db, customer_id=f"session:{session['session_id']}")) == 1

    sessions = [_session(stack)["session_id"] for _ in range(200)]
    _refuse(api, [{"id": f"bulk-{uuid.uuid4().hex}", "session_id": s} for s in sessions])
    wait_until(lambda: db.offers.count_documents({"session_id": {"$in": sessions},
                                                  "status": "sent"}) == 200,
               timeout_s=60, what="two hundred offers")
    assert db.messages.count_documents({"session_id": {"$in": sessions},
                                        "role": "marketing"}) == 200


def test_no_offer_for_unsubscribed_customers(stack: Stack, api) -> None:
    email = f"gone@{unique_domain('nooffer')}"
    import_audience(api, [email], tag=email.split("@")[1])
    db = mongo(stack)
    customer = db.customers.find_one({"email": email})
    session = verified_session(stack, api, email)
    db.customers.update_one({"_id": customer["_id"]}, {"$set": {"unsubscribed": True}})
    _refuse(api, [{"id": f"unsub-{uuid.uuid4().hex}", "customer_id": customer["_id"],
                   "session_id": session["session_id"]}])
    step = wait_until(lambda: db.journey_sends.find_one({"customer_id": customer["_id"]}),
                      what="the offer step")
    assert (step["status"], step["error"]) == ("skipped", "customer unsubscribed")
    assert db.offers.count_documents({"customer_id": customer["_id"]}) == 0


def test_a_refusal_naming_another_customers_session_is_refused(stack: Stack, api) -> None:
    email = f"owner@{unique_domain('theirs')}"
    import_audience(api, [email], tag=email.split("@")[1])
    customer = mongo(stack).customers.find_one({"email": email})
    stranger = _session(stack)  # nobody proved it is this customer's
    response = api.post("/api/journeys/events", json={"events": [
        {"id": f"x-{uuid.uuid4().hex}", "type": "offer_refused",
         "customer_id": customer["_id"], "session_id": stranger["session_id"]}]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body.events.0.session_id"
    assert mongo(stack).journey_events.count_documents({"customer_id": customer["_id"]}) == 0


def _customer_offered(stack: Stack, api, email: str) -> tuple[dict, str]:
    """A customer with this email who refused in their verified session: the session."""
    domain = email.split("@", 1)[1]
    import_audience(api, [email], tag=domain)
    customer = mongo(stack).customers.find_one({"email": email})
    session = _session(stack)  # the customer's, as a verified one is (no code mail here)
    mongo(stack).chat_sessions.update_one({"_id": session["session_id"]},
                                          {"$set": {"customer_id": customer["_id"]}})
    _refuse(api, [{"id": f"mail-{uuid.uuid4().hex}", "customer_id": customer["_id"],
                   "session_id": session["session_id"]}])
    return customer, session["session_id"]


def test_a_counter_offer_email_that_fails_transiently_is_sent_on_a_retry(
        stack: Stack, api) -> None:
    email = f"later+tempfail@{unique_domain('offer-retry')}"  # the relay says 451 once
    _customer, session_id = _customer_offered(stack, api, email)
    offer = wait_until(lambda: mongo(stack).offers.find_one({"session_id": session_id,
                                                             "emailed": True}),
                       60, "the offer emailed on its retry")
    assert "email_after" not in offer  # no further try waits
    mail = api.get("/api/outbox", params={"to": email}).json()["messages"]
    assert [m["subject"] for m in mail] == ["A special offer for you"]


def test_a_customer_who_unsubscribes_during_the_cooldown_gets_no_offer(
        stack: Stack, api) -> None:
    email = f"changed-mind@{unique_domain('offer-unsub')}"
    customer, session_id = _customer_offered(stack, api, email)
    mongo(stack).customers.update_one({"_id": customer["_id"]},
                                      {"$set": {"unsubscribed": True}})  # (cooldown: 1 s)
    step = wait_until(lambda: mongo(stack).journey_sends.find_one(
        {"customer_id": customer["_id"]}), what="the offer step")
    assert step["status"] == "skipped"
    assert mongo(stack).offers.count_documents({"session_id": session_id}) == 0
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
    await actor.fire_offers.remote([])  # (loaded: what it found stored is its own)
    live, offline = _session(stack), _session(stack)  # the offers below name them
    hub = registry.find(registry.CHAT_HUB)
    url = stack.base_url.replace("http", "ws") + f"/chat/ws/{live['session_id']}"
    try:
        async with websockets.connect(url) as socket:
            await socket.send(json.dumps({"token": live["token"]}))
            wait_until(lambda: ray.get(hub.online.remote([live["session_id"]])), 10,
                       "the socket known to the hub")
            at = datetime.now(UTC)  # two offers as the journey's offer step stores them
            offers = [{
                "_id": f"live-{uuid.uuid4().hex}", "who": customer["_id"],
                "customer_id": customer["_id"], "session_id": session["session_id"],
                "email": customer["email"], "plan": "Turbo", "discount_pct": 20.0,
                "text": "20% off Turbo.", "status": "scheduled", "created_at": at,
                "fire_at": at, "expires_at": at + timedelta(days=7)}
                for session, customer in ((live, here), (offline, away))]
            db.offers.insert_many(offers)
            assert await actor.fire_offers.remote([o["_id"] for o in offers]) == 2
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
