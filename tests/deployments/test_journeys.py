"""Journeys end to end: defined, published and edited through the real API, customers
moved by events stored through it, emails to the sink, a tracked click through the
Serve proxy ending a wait, the shards' timers ending the other."""

from __future__ import annotations

import email
import re
import uuid
from urllib.parse import urlsplit

import httpx
import ray
from pymongo import MongoClient

from tests.utils.campaigns import import_audience
from tests.utils.stack import Stack, unique_domain
from tests.utils.waiting import wait_until


def _db(stack: Stack):
    endpoints = ray.get(stack.services.endpoints.remote())
    return MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db]


def _customers(stack: Stack, api: httpx.Client, emails: list[str], tag: str) -> list[str]:
    import_audience(api, emails, tag=tag)
    by_email = {doc["email"]: doc["_id"] for doc in _db(stack).customers.find({"tags": tag})}
    return [by_email[address] for address in emails]


def _subjects(api: httpx.Client, to: str) -> list[str]:
    return sorted(m["subject"] for m in api.get("/api/outbox", params={"to": to}).json()[
        "messages"])


def _text_part(raw: bytes) -> str:
    for part in email.message_from_bytes(raw).walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True).decode()
    raise AssertionError("no text part")


def _welcome(event: str, timeout_s: float, subject: str = "Welcome") -> dict:
    return {"name": "Welcome series", "entry": {"event": event}, "steps": [
        {"id": "hello", "type": "send", "channel": "email", "subject": subject,
         "text": "Hi {{ first_name }}, start here: https://shop.example/start"},
        {"id": "clicked", "type": "wait_for", "event": "delivery.clicked",
         "timeout_s": timeout_s, "on_event": "thanks", "on_timeout": "nudge"},
        {"id": "thanks", "type": "send", "channel": "email", "subject": "Glad you came",
         "text": "Thanks {{ first_name }}", "next": "exit"},
        {"id": "nudge", "type": "send", "channel": "email", "subject": "Still there?",
         "text": "Try SMS next time, {{ first_name }}"}]}


def _events(api: httpx.Client, *events: tuple[str, str, str]) -> dict:
    response = api.post("/api/journeys/events", json={"events": [
        {"id": _id, "type": kind, "customer_id": customer} for _id, kind, customer in events]})
    assert response.status_code == 202, response.text
    return response.json()


def test_a_welcome_journey_follows_the_click_for_one_and_the_timeout_for_the_other(
        stack: Stack, api: httpx.Client) -> None:
    domain = unique_domain("journey")
    clicker, silent = _customers(stack, api, [f"a@{domain}", f"b@{domain}"], domain)
    key = f"welcome-{uuid.uuid4().hex[:6]}"
    event = f"signup_{uuid.uuid4().hex[:6]}"
    created = api.post("/api/journeys", json={"key": key,
                                              "definition": _welcome(event, 8.0)})
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "draft"
    assert _events(api, (f"{key}-early", event, clicker))["stored"] == 1  # a draft: no one
    published = api.post(f"/api/journeys/{key}/publish")
    assert published.status_code == 200 and published.json()["status"] == "published"

    taken = _events(api, (f"{key}-1", event, clicker), (f"{key}-2", event, silent),
                    (f"{key}-1", event, clicker))  # the same event twice
    assert taken == {"stored": 2, "repeated": 1}
    wait_until(lambda: _subjects(api, f"a@{domain}") == ["Welcome"]
               and _subjects(api, f"b@{domain}") == ["Welcome"], timeout_s=30)

    [message] = api.get("/api/outbox", params={"to": f"a@{domain}"}).json()["messages"]
    text = _text_part(api.get(f"/api/outbox/{message['key']}").content)
    link = re.search(r"(https?://\S+/t/c/\S+)", text).group(1)
    parts = urlsplit(link)
    with stack.client(admin=False) as public:
        click = public.get(f"{parts.path}?{parts.query}", follow_redirects=False)
    assert click.status_code == 302 and click.headers["location"] == \
        "https://shop.example/start"

    wait_until(lambda: _subjects(api, f"a@{domain}") == ["Glad you came", "Welcome"],
               timeout_s=30)
    wait_until(lambda: _subjects(api, f"b@{domain}") == ["Still there?", "Welcome"],
               timeout_s=60)
    view = api.get(f"/api/journeys/{key}").json()
    steps = {step["id"]: step for step in view["steps"]}
    assert steps["clicked"]["left_by"] == {"event": 1, "timeout": 1}
    assert view["versions"][0]["entered"] == 2
    assert view["versions"][0]["left"] == {"exit": 2}
    assert all(step["at"] == 0 for step in view["steps"])
    db = _db(stack)
    sends = list(db.journey_sends.find({"key": key}))
    assert sorted((s["customer_id"] == clicker, s["step"]) for s in sends) == [
        (False, "hello"), (False, "nudge"), (True, "hello"), (True, "thanks")]
    assert all(s["status"] == "sent" for s in sends)
    # The shards' metrics: who is at each step, and the ways out (one click, one timeout).
    def scraped() -> str | None:
        text = "".join(httpx.get(f"http://{node['NodeManagerAddress']}:"
                                 f"{node['MetricsExportPort']}/metrics", timeout=10).text
                       for node in ray.nodes() if node["Alive"])
        ways = {way: re.search(rf'ray_comms_journey_moves_total\{{[^}}]*journey="{key}"'
                               rf'[^}}]*way="{way}"[^}}]*\}} (\S+)', text) for way in
                ("event", "timeout")}
        return text if all(ways.values()) and all(
            float(m.group(1)) == 1 for m in ways.values() if m) else None

    text = wait_until(scraped, timeout_s=90, what="the journey's metrics on the endpoint")
    assert re.search(rf'ray_comms_journey_customers\{{[^}}]*journey="{key}"[^}}]*\}} 0', text)
    # Entering again is not allowed by this journey: a new signup event enrols no one.
    _events(api, (f"{key}-3", event, clicker))
    wait_until(lambda: db.journey_events.find_one({"_id": f"{key}-3"})["taken"], timeout_s=30)
    assert db.journey_enrollments.count_documents({"key": key}) == 2


def test_customers_inside_finish_on_their_version_after_an_edit(
        stack: Stack, api: httpx.Client) -> None:
    domain = unique_domain("jversion")
    first, second = _customers(stack, api, [f"a@{domain}", f"b@{domain}"], domain)
    key = f"edited-{uuid.uuid4().hex[:6]}"
    event = f"signup_{uuid.uuid4().hex[:6]}"
    definition = {"name": "v", "entry": {"event": event}, "steps": [
        {"id": "pause", "type": "wait", "seconds": 6},
        {"id": "say", "type": "send", "channel": "email", "subject": "Version one",
         "text": "one"}]}
    assert api.post("/api/journeys", json={"key": key, "definition": definition}
                    ).status_code == 201
    api.post(f"/api/journeys/{key}/publish").raise_for_status()
    _events(api, (f"{key}-1", event, first))
    db = _db(stack)
    wait_until(lambda: db.journey_enrollments.count_documents({"key": key}) == 1,
               timeout_s=30)

    definition["steps"][1]["subject"] = "Version two"
    edited = api.put(f"/api/journeys/{key}", json={"definition": definition})
    assert edited.status_code == 200 and edited.json()["version"] == 2
    assert edited.json()["status"] == "published"  # (version 1 still takes entries)
    api.post(f"/api/journeys/{key}/publish").raise_for_status()
    versions = {v["version"]: v["status"] for v in api.get(f"/api/journeys/{key}").json()[
        "versions"]}
    assert versions == {1: "retired", 2: "published"}
    _events(api, (f"{key}-2", event, second))
    wait_until(lambda: _subjects(api, f"a@{domain}") == ["Version one"]
               and _subjects(api, f"b@{domain}") == ["Version two"], timeout_s=60)
    assert {d["customer_id"]: d["version"] for d in db.journey_enrollments.find(
        {"key": key})} == {first: 1, second: 2}


def test_a_definition_that_cannot_run_is_a_422_naming_the_field(api: httpx.Client) -> None:
    bad_target = {"name": "x", "entry": {"event": "e"}, "steps": [
        {"id": "a", "type": "wait", "seconds": 1, "next": "nowhere"}]}
    response = api.post("/api/journeys/validate", json={"definition": bad_target})
    assert response.status_code == 422 and "nowhere" in response.text
    bad_template = {"name": "x", "entry": {"event": "e"}, "steps": [
        {"id": "a", "type": "send", "channel": "email", "subject": "s",
         "text": "{{ unclosed"}]}
    response = api.post("/api/journeys", json={"key": "bad-template",
                                               "definition": bad_template})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "body.definition.steps.0.text"
    ok = api.post("/api/journeys/validate", json={"definition": _welcome("signup", 60)})
    assert ok.status_code == 200 and ok.json()["listens_for"] == ["delivery.clicked", "signup"]
    too_many = api.post("/api/journeys/events", json={"events": [
        {"id": f"e{n}", "type": "x", "customer_id": "c"} for n in range(1001)]})
    assert too_many.status_code == 422 and "events" in too_many.text
    with httpx.Client(base_url=str(api.base_url)) as anonymous:
        assert anonymous.post("/api/journeys/events", json={"events": [
            {"id": "e", "type": "x", "customer_id": "c"}]}).status_code == 401


def test_a_split_reports_conversion_per_arm_and_promoting_the_winner_sends_all_its_way(
        stack: Stack, api: httpx.Client) -> None:
    domain = unique_domain("jsplit")
    people = _customers(stack, api, [f"c{n}@{domain}" for n in range(41)], domain)
    key, event, bought = (f"ab-{uuid.uuid4().hex[:6]}", f"trial_{uuid.uuid4().hex[:6]}",
                          f"bought_{uuid.uuid4().hex[:6]}")
    assert api.post("/api/journeys", json={"key": key, "definition": {
        "name": "Offer test", "entry": {"event": event}, "exit_on": [bought], "steps": [
            {"id": "offer", "type": "split", "arms": [
                {"name": "ten", "weight": 1, "next": "wait-ten"},
                {"name": "twenty", "weight": 1, "next": "wait-twenty"}]},
            {"id": "wait-ten", "type": "wait", "seconds": 3600, "next": "exit"},
            {"id": "wait-twenty", "type": "wait", "seconds": 3600}]}}).status_code == 201
    api.post(f"/api/journeys/{key}/publish").raise_for_status()
    _events(api, *((f"{key}-{c}", event, c) for c in people[:40]))
    db = _db(stack)
    wait_until(lambda: db.journey_enrollments.count_documents({"key": key}) == 40,
               timeout_s=30)
    arms = {d["customer_id"]: d["arms"]["offer"] for d in db.journey_enrollments.find(
        {"key": key})}
    twenty = [c for c, arm in arms.items() if arm == "twenty"]
    assert 0 < len(twenty) < 40  # (a fair coin 40 times)
    _events(api, *((f"{key}-bought-{c}", bought, c) for c in twenty))  # all of them buy

    def experiment() -> dict | None:
        [split] = api.get(f"/api/journeys/{key}").json()["versions"][0]["experiments"]
        by_arm = {a["arm"]: a for a in split["arms"]}
        return by_arm if by_arm["twenty"]["converted"] == len(twenty) else None

    by_arm = wait_until(experiment, timeout_s=30, what="the conversions counted")
    assert (by_arm["twenty"]["entered"], by_arm["twenty"]["rate"]) == (len(twenty), 1.0)
    assert (by_arm["ten"]["entered"], by_arm["ten"]["converted"]) == (40 - len(twenty), 0)
    assert by_arm["ten"]["high"] < by_arm["twenty"]["low"]  # the intervals apart
    view = api.get(f"/api/journeys/{key}").json()
    assert view["versions"][0]["left"] == {"converted": len(twenty)}

    assert api.post(f"/api/journeys/{key}/promote", json={"step": "offer", "arm": "none"}
                    ).json()["detail"][0]["field"] == "body.arm"
    promoted = api.post(f"/api/journeys/{key}/promote", json={"step": "offer",
                                                               "arm": "twenty"})
    assert promoted.status_code == 200, promoted.text
    assert (promoted.json()["version"], promoted.json()["status"]) == (2, "published")
    assert [a["name"] for a in promoted.json()["definition"]["steps"][0]["arms"]] == ["twenty"]
    _events(api, (f"{key}-late", event, people[40]))
    latecomer = wait_until(lambda: db.journey_enrollments.find_one(
        {"key": key, "customer_id": people[40]}), timeout_s=30)
    assert (latecomer["version"], latecomer["step"]) == (2, "wait-twenty")


def test_a_journey_texts_by_sms_through_the_smsc_then_mails(stack: Stack,
                                                           api: httpx.Client) -> None:
    """A send on `sms` goes through its channel as a campaign's does (the embedded
    SMSC over SMPP), once per customer; a customer without a number is skipped and
    goes on to the email."""
    domain = unique_domain("jsms")
    prefix = uuid.uuid4().int % 9000 + 1000
    numbers = [f"+55119{prefix:04d}{n:04d}" for n in (11, 12)]
    rows = "".join(f"s{n}@{domain},S{n},Basic,{number}\n" for n, number in enumerate(numbers))
    rows += f"nophone@{domain},N,Basic,\n"
    imported = api.post("/api/customers/import", params={"tag": domain, "wait": "true"},
                        files={"file": ("a.csv", "email,name,plan,phone\n" + rows)})
    assert imported.status_code == 200 and imported.json()["imported"] == 3, imported.text
    ids = {d["email"]: d["_id"] for d in _db(stack).customers.find({"tags": domain})}
    key = f"texts-{uuid.uuid4().hex[:6]}"
    event = f"plan_{uuid.uuid4().hex[:6]}"
    definition = {"name": "Plan changed", "entry": {"event": event}, "steps": [
        {"id": "text", "type": "send", "channel": "sms", "text": "Hi {{ first_name }}: "
         "your new plan is active."},
        {"id": "mail", "type": "send", "channel": "email", "subject": "Your new plan",
         "text": "Details, {{ first_name }}", "track": False}]}
    assert api.post("/api/journeys", json={"key": key, "definition": definition}
                    ).status_code == 201
    assert api.post(f"/api/journeys/{key}/publish").status_code == 200
    _events(api, *[(f"{key}-{n}", event, ids[address])
                   for n, address in enumerate(sorted(ids))])
    wait_until(lambda: all(_subjects(api, address) == ["Your new plan"] for address in ids),
               timeout_s=60, what="the emails")
    received = ray.get(stack.services.sms_counts.remote(f"55119{prefix:04d}"))
    assert received == {number[1:]: 1 for number in numbers}
    [message] = ray.get(stack.services.sms_outbox.remote(numbers[0][1:]))["messages"]
    assert message["text"] == "Hi S0: your new plan is active."
    sends = {(s["customer_id"], s["step"]): s for s in _db(stack).journey_sends.find(
        {"key": key})}
    assert sends[(ids[f"nophone@{domain}"], "text")]["status"] == "skipped"
    assert [sends[(ids[f"s{n}@{domain}"], "text")]["status"] for n in (0, 1)] == [
        "sent", "sent"]
    assert sends[(ids[f"s0@{domain}"], "text")]["channel"] == "sms"
