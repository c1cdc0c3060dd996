"""A messaging channel's inbox against the embedded database: a redelivered update is
known, and a conversation's waiting updates are claimed in order, each once."""

from __future__ import annotations

import asyncio
import uuid

from app.channels import inbox
from app.core.db import database, ensure_indexes


async def test_updates_are_kept_once_and_claimed_in_order_once(mongodb_uri: str) -> None:
    db = database(mongodb_uri, f"inbox_{uuid.uuid4().hex[:8]}")
    await ensure_indexes(db)
    for seq in (7, 5, 6):
        assert await inbox.store(db, "telegram", str(seq), "42", seq, {"n": seq})
    assert not await inbox.store(db, "telegram", "5", "42", 5, {"n": 5})  # redelivered
    assert await inbox.store(db, "telegram", "8", "43", 8, {"n": 8})  # another chat
    first, second = await asyncio.gather(inbox.claim_waiting(db, "telegram", "42"),
                                         inbox.claim_waiting(db, "telegram", "42"))
    taken = [doc["update"]["n"] for doc in first + second]
    assert sorted(taken) == [5, 6, 7]  # each by one caller
    assert taken[:len(first)] == sorted(taken[:len(first)])  # in order
    assert await inbox.claim_waiting(db, "telegram", "42") == []
    assert [d["update"] for d in await inbox.claim_waiting(db, "telegram", "43")] == [{"n": 8}]
