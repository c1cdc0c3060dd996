"""Chat identity against the real MongoDB wire protocol, without Ray: a claimed address
is linked only by the code sent to it, and nothing tells a customer's address from a
stranger's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.chat import sessions as chat
from app.chat import verification
from app.chat.flow_engine import load_flow
from app.marketing import offers as marketing


@pytest.fixture(scope="module")
def flow():
    return load_flow()


async def _customer(db, email: str = "ana@verify.example", phone: str = "+5511990000001"):
    await db.customers.insert_one({"_id": "k1", "email": email, "phone": phone,
                                   "plan": "Basic"})


async def _claimed(db, flow, **contact) -> tuple[str, verification.Claim]:
    session_id = chat.new_session_id()
    claim = await verification.claim(db, session_id, **contact)
    await chat.create_session(db, flow, session_id=session_id, verification=claim.pending)
    return session_id, claim


async def test_a_customer_address_and_a_stranger_address_store_the_same_kind_of_check(
        db, flow) -> None:
    await _customer(db)
    _, ours = await _claimed(db, flow, email=" Ana@Verify.example ", phone=None)
    _, theirs = await _claimed(db, flow, email="nobody@verify.example", phone=None)
    assert ours.pending.keys() == theirs.pending.keys()
    assert ours.delivery == verification.Delivery("email", "ana@verify.example",
                                                  ours.delivery.code)
    assert theirs.delivery is None  # nothing is sent to an address that is nobody's
    assert await verification.claim(db, "s", email=None, phone="  ") is None


async def test_only_the_code_sent_links_the_session(db, flow) -> None:
    await _customer(db)
    session_id, claim = await _claimed(db, flow, email=None, phone="+5511990000001")
    assert claim.delivery.channel == "sms"
    wrong = f"{(int(claim.delivery.code) + 1) % 10 ** 6:06d}"
    assert await verification.verify(db, session_id, wrong) is None
    assert (await chat.load_session(db, session_id)).customer_id is None
    assert await verification.verify(db, session_id, claim.delivery.code) == "k1"
    assert (await chat.load_session(db, session_id)).customer_id == "k1"
    # Used: the same code does not link again (nor another session).
    assert await verification.verify(db, session_id, claim.delivery.code) is None


async def test_a_check_ends_after_its_tries_or_its_time(db, flow) -> None:
    await _customer(db)
    tried, claim = await _claimed(db, flow, email="ana@verify.example", phone=None)
    for _ in range(verification.MAX_ATTEMPTS):
        assert await verification.verify(db, tried, "000000" if claim.delivery.code
                                         != "000000" else "111111") is None
    assert await verification.verify(db, tried, claim.delivery.code) is None

    late, claim = await _claimed(db, flow, email="ana@verify.example", phone=None)
    later = datetime.now(UTC) + timedelta(seconds=verification.CODE_TTL_S + 1)
    assert await verification.verify(db, late, claim.delivery.code, now=later) is None


async def test_no_code_links_a_stranger_address(db, flow) -> None:
    session_id, _ = await _claimed(db, flow, email="nobody@verify.example", phone=None)
    for code in ("000000", "123456", "999999"):
        assert await verification.verify(db, session_id, code) is None


async def test_an_unproven_session_taking_an_offer_changes_no_plan_and_counts_no_revenue(
        db) -> None:
    await _customer(db)
    event = {"_id": "m1:0", "type": "offer_accepted", "session_id": "s1", "customer_id": None}
    await marketing.record_upgrade(db, event, "Turbo")
    assert (await db.customers.find_one({"_id": "k1"}))["plan"] == "Basic"
    assert await db.events.find_one({"type": "conversion"}) is None
    assert await db.rollups.count_documents({}) == 0
    interest = await db.events.find_one({"type": "upgrade_interest"})
    assert interest["session_id"] == "s1" and interest["plan"] == "Turbo"

    await marketing.record_upgrade(db, {**event, "_id": "m2:0", "customer_id": "k1"}, "Turbo")
    assert (await db.customers.find_one({"_id": "k1"}))["plan"] == "Turbo"
    assert (await db.events.find_one({"type": "conversion"}))["customer_id"] == "k1"


async def test_a_replica_that_remembers_a_session_unproven_learns_of_the_proof(db, flow) -> None:
    await _customer(db)
    session_id, claim = await _claimed(db, flow, email="ana@verify.example", phone=None)
    stale = await chat.load_session(db, session_id)  # another replica's memory
    proving = await chat.load_session(db, session_id)
    assert await verification.verify(db, session_id, claim.delivery.code) == "k1"
    proving.customer_id = "k1"
    confirmed = await chat.append_system_turn(
        db, session_id, verification.confirmation(flow, proving.state), role="bot",
        known=proving)
    assert confirmed[-1]["text"] == verification.CONFIRMED
    assert confirmed[-1]["options"] == ["Yes", "No"]  # the question still open

    assert stale.customer_id is None
    for answer in ("1", "1", "1"):  # a client, an upgrade, Turbo accepted: the event
        docs = await chat.take_turn(db, flow, session_id, stale, answer)
    assert stale.customer_id == "k1"  # the first turn collided and re-read the session
    assert chat.events_of(docs, stale.customer_id)[0]["customer_id"] == "k1"


async def test_an_address_is_sent_a_bounded_number_of_codes_an_hour(db, flow) -> None:
    """Past the bound a claim looks the same but no code goes out and none passes: at
    most CLAIMS_PER_HOUR x MAX_ATTEMPTS guesses an hour at a customer's codes."""
    await _customer(db)
    claims = [await _claimed(db, flow, email="ana@verify.example", phone=None)
              for _ in range(verification.CLAIMS_PER_HOUR + 2)]
    sent = [claim.delivery for _, claim in claims]
    assert all(sent[:verification.CLAIMS_PER_HOUR])
    assert sent[verification.CLAIMS_PER_HOUR:] == [None, None]
    assert {frozenset(c.pending) for _, c in claims} == {frozenset(claims[0][1].pending)}
    # A stranger's claims count the same way (the work done says nothing).
    assert await db.chat_claims.count_documents({}) == 1
    await _claimed(db, flow, email="nobody@verify.example", phone=None)
    assert await db.chat_claims.count_documents({}) == 2
