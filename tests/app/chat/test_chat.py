"""The chat domain against the real MongoDB wire protocol, without Ray: sessions,
turns as a compare-and-swap, tokens, events stored once, the chat roll-up's moves."""

from __future__ import annotations

import pytest

from app.chat import sessions as chat
from app.chat.flow_engine import load_flow
from app.core import rollup_repair, rollups


@pytest.fixture(scope="module")
def flow():
    return load_flow()


async def test_turns_from_a_stale_view_apply_once_and_in_order(db, flow) -> None:
    moves = rollups.Increments()
    session_id, token, known, greeting = await chat.create_session(db, flow, moves=moves)
    assert [m["seq"] for m in greeting] == [1]
    stale = await chat.load_session(db, session_id)  # another replica's view
    stale.check(token, session_id)
    with pytest.raises(chat.SessionNotFound):
        stale.check("wrong token", session_id)

    first = await chat.take_turn(db, flow, session_id, known, "1", moves)
    second = await chat.take_turn(db, flow, session_id, stale, "1", moves)  # collides
    assert first[0]["seq"] == 2 and second[0]["seq"] == first[-1]["seq"] + 1
    assert second[0]["_id"] == f"{session_id}:{second[0]['seq']}"
    assert stale.seq == second[-1]["seq"]
    stored = await chat.messages_after(db, session_id)
    assert [m["seq"] for m in stored] == list(range(1, second[-1]["seq"] + 1))

    # The moves add up to where the session is now: one session, counted at its node.
    await db.chat_sessions.bulk_write([chat.summary_update(session_id, second)])
    await rollups.write(db, moves)
    session = await db.chat_sessions.find_one({"_id": session_id})
    expected = rollup_repair.fold_chat([session], [], [], [])
    drift = await rollup_repair.reconcile(db, expected, await db.rollups.find(
        {"kind": "chat"}).to_list(), apply=False)
    assert drift["drifted"] == 0, drift


async def test_an_event_handed_on_twice_is_stored_and_counted_once(db, flow) -> None:
    session_id, _token, known, _ = await chat.create_session(db, flow)
    docs = []
    for answer in ("1", "1", "2"):  # client, upgrade, refuse Turbo
        docs = await chat.take_turn(db, flow, session_id, known, answer)
    events = chat.events_of(docs, known.customer_id)
    assert [e["type"] for e in events] == ["offer_refused"]
    await chat.record_events(db, events)
    await chat.record_events(db, events)  # a retry after a crash
    assert await db.events.count_documents({"session_id": session_id}) == 1
    [day] = await db.rollups.find({"kind": "chat"}).to_list()
    assert day["events"] == {"offer_refused": 1}


async def test_clearing_greets_again_and_keeps_numbering(db, flow) -> None:
    session_id, _token, known, _ = await chat.create_session(db, flow)
    turn = await chat.take_turn(db, flow, session_id, known, "1")
    cleared = await chat.clear_conversation(db, flow, session_id, known)
    assert cleared[0]["seq"] == turn[-1]["seq"] + 1
    assert [m["seq"] for m in await chat.messages_after(db, session_id)] == [
        m["seq"] for m in cleared]


async def test_the_overview_counts_sessions_from_the_roll_ups(db, flow) -> None:
    moves = rollups.Increments()
    for _ in range(3):
        await chat.create_session(db, flow, moves=moves)
    assert (await chat.session_overview(db))["total_sessions"] == 0  # not written yet
    await rollups.write(db, moves)
    overview = await chat.session_overview(db)
    assert overview["total_sessions"] == 3 and len(overview["sessions"]) == 3
