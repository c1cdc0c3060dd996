"""A shard's sends against the real database and an SMTP sink: the operator's
frequency cap holds for journey sends, and a recorded send is not made again."""

from __future__ import annotations

from datetime import UTC, datetime

from app.core.config import load_settings
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.signing_keys import KeyRing
from app.journeys import enrollments
from app.journeys.definition import Journey
from app.journeys.engine import Move, SendAction
from app.journeys.sending import Sender

JOURNEY = Journey.model_validate({"name": "j", "entry": {"event": "e"}, "steps": [
    {"id": "hello", "type": "send", "channel": "email", "subject": "Hi", "text": "Hello",
     "track": False}]})


async def test_the_operators_cap_skips_a_customer_at_it_and_counts_the_send(
        db, mongodb_uri: str, open_relay) -> None:
    handler, port = open_relay
    settings = load_settings(frequency_cap_messages=1, frequency_cap_days=1.0)
    runtime = Runtime.build(settings, Endpoints(mongodb_uri, "127.0.0.1", port),
                            KeyRing.of("k"))
    now = datetime.now(UTC)
    await db.customers.insert_many([
        {"_id": "capped1", "email": "capped@cap.example", "name": "A",
         "recent_sends": [now]},
        {"_id": "free1", "email": "free@cap.example", "name": "B"}])
    docs = [enrollments.new_enrollment(f"j|{cid}", {"_id": "j@1", "key": "j", "version": 1},
                                       cid, {"_id": f"ev-{cid}"},
                                       Move(actions=[SendAction("hello", "email")],
                                            left="exit"), now)
            for cid in ("capped1", "free1")]
    sender = Sender(runtime)
    done = await sender.make(db, docs, {"j@1": JOURNEY})
    assert {k: len(v) for k, v in done.items()} == {"j|capped1": 1, "j|free1": 1}
    records = {d["customer_id"]: d async for d in db.journey_sends.find({"key": "j"})}
    assert records["capped1"]["status"] == "skipped"
    assert records["capped1"]["error"] == "frequency cap: 1 in 1 days"
    assert records["free1"]["status"] == "sent"
    assert handler.count_by_recipient("cap.example") == {"free@cap.example": 1}
    free = await db.customers.find_one({"_id": "free1"})
    assert len(free["recent_sends"]) == 1  # the send counts toward the cap
    again = await sender.make(db, docs, {"j@1": JOURNEY})  # a restart's second try
    assert {k: len(v) for k, v in again.items()} == {"j|capped1": 1, "j|free1": 1}
    assert handler.count_by_recipient("cap.example") == {"free@cap.example": 1}
