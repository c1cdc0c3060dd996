"""Email signup end to end: a real Dovecot mailbox, the watcher actor started by the app,
real MongoDB, confirmations through the real send path to the SMTP sink, /api/signup
through the Serve proxy.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import ray
from imapclient import IMAPClient

from actors.signup_watcher import find_signup_watcher
from tests.deployments.test_campaigns import mongo, sink_counts
from tests.utils.campaigns import create_campaign, finished, import_audience, launch, wait_for
from tests.utils.mail_samples import bounce_for, complaint_for, reply
from tests.utils.stack import Stack, unique_domain
from tests.utils.waiting import wait_until


def mailbox(stack: Stack) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=stack.imap.port, ssl=False, timeout=30)
    client.login(stack.imap.user, stack.imap.password)
    return client


def deliver(stack: Stack, api, *messages: bytes) -> None:
    with mailbox(stack) as client:
        for raw in messages:
            client.append("INBOX", raw)
    assert api.post("/api/signup/poll").status_code == 202


def message_ids_in(stack: Stack, folder: str) -> set[str]:
    with mailbox(stack) as client:
        client.select_folder(folder, readonly=True)
        found = client.fetch(client.search(["ALL"]), ["BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
    return {value.decode().split(":", 1)[1].strip() for item in found.values()
            for key, value in item.items() if key.startswith(b"BODY[HEADER")}


def eventually(check: Callable[[], Any], timeout_s: float = 90, what: str = "") -> Any:
    return wait_until(check, timeout_s, what, interval_s=0.3)


def handled_records(db, message_ids: list[str], timeout_s: float = 90) -> list[dict]:
    """The watcher's records of these messages, once all are moved out of the inbox."""
    def done() -> list[dict] | None:
        records = list(db.inbound_mail.find({"message_id": {"$in": message_ids}}))
        moved = [r for r in records if r["state"] == "moved"]
        return records if len(moved) >= len(message_ids) else None
    return eventually(done, timeout_s, f"records of {message_ids}")


def sent_campaign(stack: Stack, api, domain: str, people: int) -> tuple[str, list[dict]]:
    """A finished campaign to `people` customers of `domain`, and its deliveries."""
    emails = [f"client{n}@{domain}" for n in range(people)]
    import_audience(api, emails, tag=domain)
    campaign_id = create_campaign(api, domain, subject="Oferta: sign up for Turbo")
    launch(api, campaign_id, workers=1)
    view = wait_for(api, campaign_id, finished)
    assert view["counts"]["sent"] == people, view
    return campaign_id, list(mongo(stack).deliveries.find({"campaign_id": campaign_id}))


def test_signup_unsubscribe_and_unrelated_replies(stack: Stack, api) -> None:
    domain = unique_domain("signup")
    campaign_id, [delivery] = sent_campaign(stack, api, domain, 1)
    db = mongo(stack)
    client = db.customers.find_one({"_id": delivery["customer_id"]})
    prospect = f"bia.prospect@{domain}"
    messages = [
        reply(f"=?utf-8?q?B=C3=ADa_Prospect?= <{prospect}>", "Olá, quero me cadastrar!",
              in_reply_to=delivery["message_id"]),
        reply(client["email"], "Please unsubscribe me from this list.",
              in_reply_to=delivery["message_id"]),
        reply(f"curious@{domain}", "What time does your store open on Sundays?",
              subject="Store hours"),
    ]
    ids = [m.message_id for m in messages]
    deliver(stack, api, *(m.raw for m in messages))
    records = {r["message_id"]: r for r in handled_records(db, ids)}

    customer = db.customers.find_one({"email": prospect})
    assert customer is not None and customer["name"] == "Bía Prospect"
    assert customer["is_client"] is False and "email-signup" in customer["tags"]
    assert customer["signup"]["campaign_id"] == campaign_id
    assert records[ids[0]]["kind"] == "signup"
    assert records[ids[0]]["outcome"]["action"] == "customer_created"
    # The confirmation went through the normal send path: a delivery, a task, the relay.
    eventually(lambda: sink_counts(stack, domain).get(prospect) == 1, what="confirmation")
    confirmation = eventually(lambda: db.deliveries.find_one(  # outcomes are written behind
        {"_id": f"signup-confirmations:{customer['_id']}", "status": "sent"}), what="record")
    assert confirmation["worker"] and confirmation["message_id"]
    outbox = ray.get(stack.services.outbox.remote(prospect, 5))["messages"]
    assert outbox[0]["subject"] == stack.settings.signup_confirmation_subject
    # Double opt-in: the From header proved nothing, so no campaign reaches the address
    # until the link in the confirmation is followed (GET asks; POST confirms).
    assert db.customers.find_one({"email": prospect})["unsubscribed"] == "pending"
    raw = ray.get(stack.services.outbox_message.remote(outbox[0]["key"])).decode()
    link = re.search(r"(/signup/confirm/[A-Za-z0-9_.-]+)", raw).group(1)
    with stack.client(admin=False) as public:
        assert "Confirm your signup?" in public.get(link).text
        assert db.customers.find_one({"email": prospect})["unsubscribed"] == "pending"
        assert public.post(link + "x").status_code == 404  # a forged link
        unsubscribe_token = raw.split("/unsubscribe/", 1)[1].split()[0].strip(">")
        assert public.post(f"/signup/confirm/{unsubscribe_token}").status_code == 404
        assert public.post(link).status_code == 200
    confirmed = db.customers.find_one({"email": prospect})
    assert confirmed["unsubscribed"] is False and confirmed["consent_at"]

    assert db.customers.find_one({"_id": client["_id"]})["unsubscribed"] is True
    assert records[ids[1]]["kind"] == "unsubscribe"
    assert records[ids[2]]["kind"] == "review"
    assert records[ids[2]]["reason"] == "no signup or unsubscribe keyword"

    assert ids[2] in message_ids_in(stack, "Needs review")
    assert {ids[0], ids[1]} <= message_ids_in(stack, "Processed")
    assert not set(ids) & message_ids_in(stack, "INBOX")

    body = api.get("/api/signup", params={"limit": 200}).json()
    assert body["configured"] and body["watcher"]["running"]
    assert body["watcher"]["connected"] is True
    assert ids[2] in [item["message_id"] for item in body["review_queue"]]
    assert {"campaign_id": campaign_id, "signups": 1} in body["by_campaign"]
    assert set(ids) <= {item["message_id"] for item in body["recent"]}
    assert stack.imap.password not in str(body)


def test_watcher_restart_neither_repeats_nor_misses(stack: Stack, api) -> None:
    domain = unique_domain("restart")
    db = mongo(stack)
    first = [reply(f"p{n}@{domain}", "Sign up, please") for n in range(2)]
    deliver(stack, api, *(m.raw for m in first))
    handled_records(db, [m.message_id for m in first])
    watcher = find_signup_watcher()
    pid_before = ray.get(watcher.status.remote())["pid"]

    ray.kill(watcher, no_restart=False)  # as if its process died; Ray restarts it
    late = reply(f"p2@{domain}", "Quero o cadastro")
    with mailbox(stack) as client:  # arrives while the watcher is down or starting
        client.append("INBOX", late.raw)

    ids = [m.message_id for m in [*first, late]]
    records = handled_records(db, ids)
    assert sorted(r["message_id"] for r in records) == sorted(ids)  # one record each
    assert all(r["runs"] == 1 for r in records)  # no message handled twice
    status = ray.get(find_signup_watcher().status.remote())
    assert status["pid"] != pid_before
    people = {f"p{n}@{domain}" for n in range(3)}
    eventually(lambda: set(sink_counts(stack, domain)) == people, what="3 confirmations")
    time.sleep(2)  # give a duplicate every chance to show up
    assert sink_counts(stack, domain) == {person: 1 for person in people}


def test_a_bounce_marks_its_delivery_failed(stack: Stack, api) -> None:
    domain = unique_domain("bounce")
    campaign_id, deliveries = sent_campaign(stack, api, domain, 2)
    db = mongo(stack)
    gone, kept = deliveries
    email = db.customers.find_one({"_id": gone["customer_id"]})["email"]
    dsn = bounce_for(email, gone["message_id"])
    deliver(stack, api, dsn.raw)
    [record] = handled_records(db, [dsn.message_id])

    assert record["kind"] == "bounce" and record["outcome"]["action"] == "delivery_failed"
    failed = db.deliveries.find_one({"_id": gone["_id"]})
    assert failed["status"] == "failed" and failed["last_code"] == 550
    assert "user unknown" in failed["last_error"]
    assert db.deliveries.find_one({"_id": kept["_id"]})["status"] == "sent"
    counts = api.get(f"/api/campaigns/{campaign_id}").json()["counts"]
    assert (counts["sent"], counts["failed"]) == (1, 1)
    assert dsn.message_id in message_ids_in(stack, "Processed")
    # 5.1.1: the mailbox does not exist, so the address is on the suppression list.
    assert record["outcome"]["suppressed"] is True
    listed = api.get("/api/suppressions", params={"channel": "email"}).json()["suppressions"]
    [entry] = [e for e in listed if e["address"] == email]
    assert entry["reason"] == "hard-bounce" and entry["detail"]["via"] == "dsn"


def test_a_complaint_suppresses_its_address_for_email(stack: Stack, api) -> None:
    domain = unique_domain("complaint")
    campaign_id, deliveries = sent_campaign(stack, api, domain, 2)
    db = mongo(stack)
    annoyed, other = deliveries
    email = db.customers.find_one({"_id": annoyed["customer_id"]})["email"]
    report = complaint_for(email, annoyed["message_id"])
    deliver(stack, api, report.raw)
    [record] = handled_records(db, [report.message_id])

    assert record["kind"] == "complaint" and record["outcome"]["action"] == "suppressed"
    assert record["outcome"]["campaign_id"] == campaign_id
    listed = api.get("/api/suppressions", params={"channel": "email"}).json()["suppressions"]
    [entry] = [e for e in listed if e["address"] == email]
    assert (entry["reason"], entry["detail"]["feedback_type"]) == ("complaint", "abuse")
    assert db.customers.find_one({"_id": annoyed["customer_id"]})["opted_out"] == ["email"]
    assert "opted_out" not in db.customers.find_one({"_id": other["customer_id"]})


def test_malformed_mail_goes_to_review_and_the_watcher_keeps_running(stack: Stack,
                                                                     api) -> None:
    domain = unique_domain("hostile")
    db = mongo(stack)
    watcher = find_signup_watcher()
    pid = ray.get(watcher.status.remote())["pid"]
    boundary_missing = "multipart/mixed; boundary=\"never-there\""
    huge = reply(f"big@{domain}", "quero cadastro " + "A" * 5_000_000,
                 content_type=boundary_missing)
    broken = reply(f"broken@{domain}", "quero cadastro\r\n" * 50,
                   content_type=boundary_missing)
    with_attachment = reply(f"attach@{domain}", "Quero me cadastrar", attachment=(
        "setup.exe", b"MZ\x90\x00" + b"\x00" * 4000))
    ids = [huge.message_id, broken.message_id, with_attachment.message_id]
    deliver(stack, api, huge.raw, broken.raw, with_attachment.raw)
    records = {r["message_id"]: r for r in handled_records(db, ids)}

    assert records[huge.message_id]["kind"] == "review"
    assert records[huge.message_id]["reason"].startswith("too large to read")
    assert records[broken.message_id]["kind"] == "review"
    assert records[broken.message_id]["reason"].startswith("broken MIME")
    assert {huge.message_id, broken.message_id} <= message_ids_in(stack, "Needs review")
    good = records[with_attachment.message_id]
    assert good["kind"] == "signup" and good["attachments"] == ["setup.exe"]
    assert all(len(str(r)) < 5000 for r in records.values())  # no body, no attachment kept
    assert db.customers.find_one({"email": f"attach@{domain}"}) is not None
    status = ray.get(watcher.status.remote())
    assert status["pid"] == pid and status["last_error"] is None


def test_signup_api_needs_the_admin_token(stack: Stack) -> None:
    with stack.client(admin=False) as anonymous:
        assert anonymous.get("/api/signup").status_code == 401
        assert anonymous.post("/api/signup/poll").status_code == 401


def test_a_rebuilt_mailbox_is_read_from_its_start(stack: Stack, api) -> None:
    """A new UIDVALIDITY voids the saved position: UIDs start again, nothing is missed."""
    domain = unique_domain("validity")
    db = mongo(stack)
    ready = reply(f"first@{domain}", "quero")
    deliver(stack, api, ready.raw)
    handled_records(db, [ready.message_id])
    account = api.get("/api/signup").json()["account"]
    # As if the server had rebuilt the mailbox: the saved position is from another life.
    db.imap_state.update_one({"_id": account}, {"$set": {"uidvalidity": 1,
                                                         "last_uid": 10**9}})
    ray.kill(find_signup_watcher(), no_restart=False)  # reconnects, sees the new validity
    late = reply(f"second@{domain}", "quero")
    deliver(stack, api, late.raw)
    [record] = handled_records(db, [late.message_id])
    assert record["kind"] == "signup" and record["runs"] == 1
    state = db.imap_state.find_one({"_id": account})
    assert state["uidvalidity"] != 1 and state["last_uid"] == record["uid"]
