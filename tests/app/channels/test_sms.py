"""SMS text and outcomes (pure logic; the SMPP path is tested end to end in
tests/deployments/test_sms.py and against the embedded SMSC in tests/embedded)."""

from __future__ import annotations

from aiosmpplib import SmppCommandStatus

from app.channels.sms.receipts import DELIVERED, UNDELIVERABLE, receipt_of
from app.channels.sms.smpp import FAILED, RETRY, SENT, Backoff, classify, describe, split


def test_the_encoding_and_parts_follow_the_text() -> None:
    assert describe("Hello Ana, your plan is Basic.") == {
        "encoding": "GSM-7", "segments": 1, "characters": 30}
    assert describe("x" * 160)["segments"] == 1
    assert describe("x" * 161)["segments"] == 2  # 153 a part once concatenated
    assert describe("Olá, você!")["encoding"] == "UCS-2"  # "ê" is not in GSM 03.38
    assert describe("ç" * 70)["segments"] == 1 and describe("ç" * 71)["segments"] == 2
    encoding, parts = split("y" * 400, "camp:cust")
    assert encoding == "gsm0338" and len(parts) == 3
    # Each part carries the same concatenation reference, numbered 1..3 of 3; a rerun
    # of the same delivery uses the same reference.
    assert {p[3] for p in parts} == {split("y" * 400, "camp:cust")[1][0][3]}
    assert [(p[4], p[5]) for p in parts] == [(3, 1), (3, 2), (3, 3)]


def test_smpp_answers_become_outcomes() -> None:
    assert classify(SmppCommandStatus.ESME_ROK) == SENT
    assert classify(SmppCommandStatus.ESME_RTHROTTLED) == RETRY
    assert classify(SmppCommandStatus.ESME_RMSGQFUL) == RETRY
    assert classify(SmppCommandStatus.ESME_RINVDSTADR) == FAILED
    assert classify(SmppCommandStatus.ESME_RBINDFAIL) == "auth"


def test_a_delivery_is_settled_by_its_parts() -> None:
    assert receipt_of(["DELIVRD"]) == DELIVERED
    assert receipt_of(["DELIVRD", None]) is None  # a part's receipt still to come
    assert receipt_of(["DELIVRD", "DELIVRD"]) == DELIVERED
    assert receipt_of([None, "UNDELIV"]) == UNDELIVERABLE  # one lost part is enough
    assert receipt_of(["EXPIRED"]) == UNDELIVERABLE
    assert receipt_of(["ENROUTE"]) is None
    assert receipt_of([]) is None


async def test_throttled_answers_hold_new_submits_for_a_short_growing_while() -> None:
    backoff = Backoff()
    assert await backoff.allow_request()
    await backoff.throttled()
    assert not await backoff.allow_request() and 0 < await backoff.throttle_delay() <= 0.1
    for _ in range(10):
        await backoff.throttled()
    assert backoff.delay == Backoff.MAX_S  # doubling, capped
    await backoff.not_throttled()
    await backoff.throttled()
    assert backoff.delay == 0.1  # an accepted submit started it over


async def test_a_receipt_that_arrives_before_its_part_is_stored_until_it_matches(db) -> None:
    from datetime import UTC, datetime

    from app.channels.sms.receipts import Receipt, apply, stored_waiting

    early = Receipt("smsc-1", "DELIVRD", datetime.now(UTC))
    counts, later = await apply(db, [early])
    assert later == [early] and early.stored
    # The gateway stops here; the next one starts with what was waiting.
    [recovered] = await stored_waiting(db)
    assert (recovered.smsc_id, recovered.stat, recovered.stored) == ("smsc-1", "DELIVRD", True)

    await db.deliveries.insert_one({"_id": "c1:k1", "campaign_id": "c1", "channel": "sms",
                                    "smsc_ids": ["smsc-1"],
                                    "created_at": datetime.now(UTC)})
    await db.sms_parts.insert_one({"_id": "smsc-1", "delivery_id": "c1:k1",
                                   "campaign_id": "c1"})
    await db.campaigns.insert_one({"_id": "c1", "counts": {}})
    counts, later = await apply(db, [recovered])
    assert later == [] and counts["delivered"] == 1
    assert await stored_waiting(db) == []  # matched: no longer stored
