"""The chatbot over real HTTP and a real WebSocket, through the Serve proxy."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import ray
import websockets
from pymongo import MongoClient

from actors import registry
from app.channels.email.composer import CODE_SUBJECT
from app.chat.flow_engine import enter, load_flow
from app.chat.sessions import append_system_turn
from app.core.db import database
from tests.utils.chat import code_in, code_mails, new_session, verified_session, verify
from tests.utils.stack import Stack, unique_domain
from tests.utils.waiting import wait_until


def say(stack: Stack, session: dict, text: str) -> list[dict]:
    with stack.client(admin=False) as client:
        response = client.post(f"/chat/api/sessions/{session['session_id']}/messages",
                               json={"text": text},
                               headers={"Authorization": f"Bearer {session['token']}"})
    assert response.status_code == 200, response.text
    return response.json()["messages"]


def mongo(stack: Stack):
    endpoints = ray.get(stack.services.endpoints.remote())
    return MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db]


def test_refusing_turbo_stores_an_offer_refused_event_for_the_customer(stack, api) -> None:
    domain = unique_domain("chat")
    api.post("/api/customers/generate?wait=true",
             json={"count": 1, "domain": domain, "tag": domain})
    customer = mongo(stack).customers.find_one({"tags": domain})
    session = verified_session(stack, api, customer["email"])
    assert session["verification"] == "pending"
    assert session["messages"][0]["options"] == ["Yes", "No"]

    say(stack, session, "1")
    say(stack, session, "yes")
    turn = say(stack, session, "2")
    assert [m["role"] for m in turn] == ["customer", "bot"]
    assert turn[-1]["node"] == "turbo_refused" and turn[-1]["options"] == []

    db = mongo(stack)
    deadline = 100
    refused = {"session_id": session["session_id"], "type": "offer_refused"}
    while deadline and not db.events.find_one(refused):
        deadline -= 1
        time.sleep(0.1)
    event = db.events.find_one(refused)
    assert event["customer_id"] == customer["_id"] and event["delivered"] is True

    with stack.client(admin=False) as client:
        inbox = client.get(f"/chat/api/sessions/{session['session_id']}/messages",
                           params={"after": 2},
                           headers={"Authorization": f"Bearer {session['token']}"}).json()
    # 1 the greeting, 2 the confirmation of the code, then three turns of two.
    assert [m["seq"] for m in inbox["messages"]] == [3, 4, 5, 6, 7, 8]
    assert inbox["cursor"] == 8


def test_a_typed_email_acts_for_no_customer_until_its_code_is_entered(stack, api) -> None:
    domain = unique_domain("claim")
    api.post("/api/customers/generate?wait=true",
             json={"count": 1, "domain": domain, "tag": domain})
    db = mongo(stack)
    customer = db.customers.find_one({"tags": domain})
    ours = new_session(stack, email=customer["email"])
    theirs = new_session(stack, email=f"stranger@{domain}")

    def shown(reply: dict) -> dict:  # all but the session's own id, token and times
        return {**reply, "session_id": None, "token": None,
                "messages": [{**m, "created_at": None} for m in reply["messages"]]}
    assert shown(ours) == shown(theirs) and ours["verification"] == "pending"

    for answer in ("1", "yes", "1"):  # a client, an upgrade, Turbo accepted
        say(stack, ours, answer)
    wait_until(lambda: db.events.find_one({"session_id": ours["session_id"],
                                           "type": "upgrade_interest"}),
               what="the acceptance handled")
    assert db.customers.find_one({"_id": customer["_id"]})["plan"] == customer["plan"]
    assert db.events.find_one({"session_id": ours["session_id"], "type": "conversion"}) is None

    refusing = new_session(stack, email=customer["email"])
    for answer in ("1", "yes", "2"):  # Turbo refused: a counter-offer after the cooldown
        say(stack, refusing, answer)
    offer = wait_until(lambda: db.offers.find_one({"session_id": refusing["session_id"],
                                                   "status": "sent"}), what="the offer")
    assert offer["customer_id"] is None and offer["email"] is None
    assert not offer.get("emailed")
    subjects = {m["subject"] for m in api.get("/api/outbox",
                                              params={"to": customer["email"]}).json()["messages"]}
    assert subjects == {CODE_SUBJECT}  # the codes asked for, nothing else
    assert code_mails(api, f"stranger@{domain}") == []

    wrong = verify(stack, theirs, "123456")
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["field"] == "code"
    # One code went to the address for each session that claimed it; one of them is
    # the refusing session's (they are sent in the background, in either order).
    mails = wait_until(lambda: len(found := code_mails(api, customer["email"])) == 2 and found,
                       what="both codes")
    codes = [code_in(api, mail) for mail in mails]
    answers = [verify(stack, refusing, code).status_code for code in codes]
    assert sorted(answers) == [200, 422]
    with stack.client(admin=False) as client:
        client.delete(f"/chat/api/sessions/{refusing['session_id']}/messages",
                      headers={"Authorization": f"Bearer {refusing['token']}"})
    for answer in ("1", "yes", "1"):
        say(stack, refusing, answer)
    wait_until(lambda: db.customers.find_one({"_id": customer["_id"], "plan": "Turbo"}),
               what="the proven customer's plan change")


def test_wrong_token_is_404_and_bad_text_names_the_field(stack: Stack) -> None:
    first, second = new_session(stack), new_session(stack)
    url = f"/chat/api/sessions/{first['session_id']}/messages"
    with stack.client(admin=False) as client:
        wrong = client.post(url, json={"text": "1"},
                            headers={"Authorization": f"Bearer {second['token']}"})
        assert wrong.status_code == 404
        assert client.get(url, headers={"Authorization": f"Bearer {second['token']}"}
                          ).status_code == 404
        assert client.post(url, json={"text": "1"}).status_code == 401
        mine = {"Authorization": f"Bearer {first['token']}"}
        too_long = client.post(url, json={"text": "x" * 2001}, headers=mine)
        assert too_long.status_code == 422
        assert too_long.json()["detail"][0]["field"] == "body.text"
        not_text = client.post(url, json={"text": 42}, headers=mine)
        assert not_text.status_code == 422
        assert not_text.json()["detail"][0]["field"] == "body.text"
        assert client.post(url, json={"text": ""}, headers=mine).status_code == 422


def test_clear_restarts_the_flow(stack: Stack) -> None:
    session = new_session(stack)
    say(stack, session, "1")
    with stack.client(admin=False) as client:
        cleared = client.delete(f"/chat/api/sessions/{session['session_id']}/messages",
                                headers={"Authorization": f"Bearer {session['token']}"})
        inbox = client.get(f"/chat/api/sessions/{session['session_id']}/messages",
                           headers={"Authorization": f"Bearer {session['token']}"}).json()
    assert cleared.status_code == 200
    assert [m["node"] for m in inbox["messages"]] == ["start"]
    assert say(stack, session, "1")[-1]["node"] == "upgrade"


async def _receive_until(socket, predicate, timeout_s: float = 15) -> list[dict]:
    seen = []
    async with asyncio.timeout(timeout_s):
        while True:
            frame = json.loads(await socket.recv())
            seen.append(frame)
            if predicate(frame):
                return seen


async def test_websocket_conversation_and_pushed_messages(stack: Stack) -> None:
    session = new_session(stack)
    url = stack.base_url.replace("http", "ws") + f"/chat/ws/{session['session_id']}"
    assert "token" not in url
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"token": session["token"]}))
        greeting = await _receive_until(socket, lambda f: f["type"] == "message")
        assert greeting[-1]["message"]["node"] == "start"
        for answer, node in (("1", "upgrade"), ("sim", "turbo_offer"), ("2", "turbo_refused")):
            await socket.send(json.dumps({"text": answer}))
            frames = await _receive_until(
                socket, lambda f, n=node: f.get("message", {}).get("node") == n)
            assert frames[0]["message"] == {**frames[0]["message"], "role": "customer",
                                            "text": answer}

        await socket.send(json.dumps({"text": 42}))
        error = await _receive_until(socket, lambda f: f["type"] == "error")
        assert error[-1]["field"] == "text"

        # A message written from outside the chatbot (as the marketing actor does).
        endpoints = await stack.services.endpoints.remote()
        db = database(endpoints.mongodb_uri, stack.settings.mongodb_db)
        docs = await append_system_turn(db, session["session_id"],
                                        enter(load_flow(), "counter_offer"), role="marketing",
                                        kind="offer", offer={"id": "test", "discount_pct": 20})
        hub = registry.find(registry.CHAT_HUB)
        await hub.publish.remote(session["session_id"], docs[-1]["seq"])
        pushed = await _receive_until(socket, lambda f: f.get("message", {}).get("role")
                                      == "marketing")
        assert pushed[-1]["message"]["kind"] == "offer"
        last_seq = pushed[-1]["message"]["seq"]

    # Reconnecting with a cursor replays exactly what came after it.
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"token": session["token"], "after": last_seq - 2}))
        replay = [json.loads(await socket.recv()) for _ in range(2)]
        assert [f["message"]["seq"] for f in replay] == [last_seq - 1, last_seq]


@pytest.mark.parametrize("hello", ['{"token": "bad"}', '{"text": "1"}', "not json"])
async def test_websocket_without_the_sessions_token_first_is_closed(stack: Stack,
                                                                    hello: str) -> None:
    session = new_session(stack)
    url = stack.base_url.replace("http", "ws") + f"/chat/ws/{session['session_id']}"
    async with websockets.connect(url) as socket:
        await socket.send(hello)
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            await socket.recv()  # nothing of the session, not even its greeting
    assert closed.value.rcvd.code == 4401


async def test_fifty_sessions_ten_messages_each_on_two_replicas(stack: Stack) -> None:
    answers = ["1", "1", "2", "hello", "2", "2", "5", "again", "1", "nope"]

    async def converse(client: httpx.AsyncClient) -> tuple[dict, list[dict]]:
        created = await client.post("/chat/api/sessions", json={})
        assert created.status_code == 201, created.text
        session = created.json()
        headers = {"Authorization": f"Bearer {session['token']}"}
        for text in answers:
            response = await client.post(f"/chat/api/sessions/{session['session_id']}/messages",
                                         json={"text": text}, headers=headers)
            assert response.status_code == 200, response.text
        inbox = (await client.get(f"/chat/api/sessions/{session['session_id']}/messages",
                                  headers=headers)).json()["messages"]
        return session, inbox

    limits = httpx.Limits(max_connections=60)
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=120, limits=limits) as client:
        results = await asyncio.gather(*(converse(client) for _ in range(50)))

    for _session, inbox in results:
        assert [m["seq"] for m in inbox] == list(range(1, len(inbox) + 1))
        assert [m["text"] for m in inbox if m["role"] == "customer"] == answers
    replicas = {s["replica"] for s in mongo(stack).chat_sessions.find(
        {"_id": {"$in": [session["session_id"] for session, _ in results]}})}
    assert len(replicas) == 2  # both ChatBot replicas took turns


def test_operator_view_lists_sessions_and_open_handoffs(stack: Stack, api) -> None:
    session = new_session(stack)
    for answer in ("1", "2", "3"):  # client, no upgrade, talk to a human
        say(stack, session, answer)
    # The handoff event is stored with the turn; the session's summary (where it is in
    # the flow) is written by its replica once a second: wait for both.
    deadline = 100
    overview: dict = {}
    while deadline:
        overview = api.get("/api/chat/sessions").json()
        listed = [s for s in overview["sessions"] if s["id"] == session["session_id"]]
        if any(h["session_id"] == session["session_id"] for h in overview["open_handoffs"]) \
                and listed and listed[0]["node"] == "handoff":
            break
        deadline -= 1
        time.sleep(0.1)
    mine = next(s for s in overview["sessions"] if s["id"] == session["session_id"])
    assert mine["node"] == "handoff" and mine["ended"] is True
    assert any(h["session_id"] == session["session_id"] for h in overview["open_handoffs"])
    with stack.client(admin=False) as client:
        assert client.get("/api/chat/sessions").status_code == 401


def _replica_keys(stack: Stack) -> dict[str, str]:
    """An x-session-id value that Serve routes to each ChatBot replica."""
    keys: dict[str, str] = {}
    with stack.client(admin=False) as client:
        for n in range(200):
            key = f"probe-{n}"
            replica = client.get("/chat/api/health", headers={"x-session-id": key}).json()
            keys.setdefault(replica["replica"], key)
            if len(keys) == 2:
                return keys
    raise AssertionError(f"x-session-id reached only {list(keys)}")


def _say_via(stack: Stack, session: dict, text: str, key: str,
             token: str | None = None) -> httpx.Response:
    with stack.client(admin=False) as client:
        return client.post(f"/chat/api/sessions/{session['session_id']}/messages",
                           json={"text": text},
                           headers={"Authorization": f"Bearer {token or session['token']}",
                                    "x-session-id": key})


def test_each_replica_sees_the_turns_the_other_took(stack: Stack) -> None:
    first, second = _replica_keys(stack).values()
    session = new_session(stack)
    nodes = []
    # Both replicas remember the session after their first turn on it; each turn after
    # that starts from a state the other replica moved on.
    for text, key in (("1", first), ("2", second), ("1", first), ("2", second)):
        response = _say_via(stack, session, text, key)
        assert response.status_code == 200, response.text
        nodes.append(response.json()["messages"][-1]["node"])
    assert nodes == ["upgrade", "client_menu", "billing", "anything_else"]
    with stack.client(admin=False) as client:
        inbox = client.get(f"/chat/api/sessions/{session['session_id']}/messages",
                           headers={"Authorization": f"Bearer {session['token']}"}).json()
    seqs = [m["seq"] for m in inbox["messages"]]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [m["text"] for m in inbox["messages"] if m["role"] == "customer"] == \
        ["1", "2", "1", "2"]


def test_a_remembered_session_still_refuses_a_wrong_token(stack: Stack) -> None:
    mine, other = new_session(stack), new_session(stack)
    key = mine["session_id"]
    assert _say_via(stack, mine, "1", key).status_code == 200  # the replica remembers it
    assert _say_via(stack, mine, "1", key, token=other["token"]).status_code == 404
    assert _say_via(stack, mine, "1", key, token=mine["token"] + "x").status_code == 404
    assert _say_via(stack, mine, "1", key).json()["messages"][-1]["node"] == "turbo_offer"


def _profiled(db, key: str) -> list[dict]:
    """The profiler's entries for commands that name the session (not the test's own)."""
    return [p for p in db.system.profile.find({"op": {"$in": ["insert", "update", "query",
                                                                "command", "getmore"]}})
            if key in str(p.get("command")) and p.get("ns") != f"{db.name}.system.profile"]


def test_a_chat_turn_costs_at_most_two_database_commands(stack: Stack) -> None:
    """Counted by the database's own profiler: every command that names the session."""
    session = new_session(stack)
    key = session["session_id"]  # Serve keeps the session on one replica
    assert _say_via(stack, session, "1", key).status_code == 200
    db = mongo(stack)
    wait_until(lambda: db.chat_sessions.find_one({"_id": key})["last_seq"] == 3,
               what="the first turn's summary")
    db.command("profile", 2)
    try:
        turn = _say_via(stack, session, "1", key).json()["messages"]
        # The server writes a command's profile entry after the command has answered (and
        # only while profiling is on), so the summary can be visible before its entry is:
        # wait for the entry itself before profiling stops.
        wait_until(lambda: any(p["op"] == "update" for p in _profiled(db, key)),
                   what="the turn's summary in the profile")
    finally:
        db.command("profile", 0)
    assert db.chat_sessions.find_one({"_id": key})["last_seq"] == turn[-1]["seq"]
    ours = _profiled(db, key)
    assert [(p["op"], p["ns"].split(".", 1)[1]) for p in ours] == [
        ("insert", "messages"), ("update", "chat_sessions")], ours
