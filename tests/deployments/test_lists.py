"""Lists that scale, over the real API: bounded pages walked with a cursor, every item
once, no count of a whole collection (an estimate, labelled as one)."""

from __future__ import annotations

from typing import Any

from tests.utils.stack import Stack, unique_domain


def list_all(api, path: str, key: str, **params: Any) -> list[dict]:
    """Every item of a paged list, following `next_cursor` to the end."""
    items, cursor = [], None
    while True:
        reply = api.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        items += body[key]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def test_customers_page_by_cursor_newest_first_each_once(api) -> None:
    domain = unique_domain("pages")
    api.post("/api/customers/generate?wait=true",
             json={"count": 7, "domain": domain, "tag": domain})
    first = api.get("/api/customers", params={"tag": domain, "limit": 3}).json()
    assert len(first["customers"]) == 3 and first["next_cursor"]
    assert "total" not in first and isinstance(first["estimated_total"], int)
    customers = list_all(api, "/api/customers", "customers", tag=domain, limit=3)
    assert len(customers) == 7 and len({c["id"] for c in customers}) == 7
    assert all(c["email"].endswith(domain) for c in customers)
    times = [c["created_at"] for c in customers]
    assert times == sorted(times, reverse=True)


def test_campaigns_and_chat_sessions_page_by_cursor_too(api, stack: Stack) -> None:
    for path, key in (("/api/campaigns", "campaigns"), ("/api/chat/sessions", "sessions")):
        first = api.get(path, params={"limit": 1}).json()
        assert len(first[key]) <= 1 and "next_cursor" in first
        if first["next_cursor"]:
            second = api.get(path, params={"limit": 1, "cursor": first["next_cursor"]}).json()
            assert second[key] and second[key][0]["id"] != first[key][0]["id"]


def test_a_cursor_the_api_did_not_hand_out_is_a_422_naming_it(api) -> None:
    for path in ("/api/customers", "/api/campaigns", "/api/chat/sessions"):
        reply = api.get(path, params={"cursor": "not-a-cursor"})
        assert reply.status_code == 422, (path, reply.text)
        assert reply.json()["detail"][0]["field"] == "query.cursor"
