"""Health, auth and the outbox, over real HTTP through the Serve proxy."""

from __future__ import annotations

import aiosmtplib
import pytest

from app.mailer import Mail, build_message
from tests.utils.stack import Stack, unique_domain


def test_health_reports_every_part_up(stack: Stack) -> None:
    with stack.client(admin=False) as client:
        response = client.get("/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["down"] == []
    assert body["mongodb"]["status"] == body["smtp"]["status"] == body["ray"]["status"] == "up"
    assert body["mode"] == {"mongodb": "embedded", "smtp": "embedded"}


@pytest.mark.parametrize("path", ["/api/outbox", "/api/outbox/missing"])
def test_admin_routes_need_the_token(stack: Stack, path: str) -> None:
    with stack.client(admin=False) as client:
        assert client.get(path).status_code == 401
        wrong = client.get(path, headers={"Authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401  # not signed in; 403 is for a role that may not
        assert stack.token not in wrong.text


async def test_outbox_lists_what_the_sink_received(stack: Stack) -> None:
    endpoints = await stack.services.endpoints.remote()
    domain = unique_domain("outbox")
    for n in range(3):
        mail = Mail(to_email=f"user{n}@{domain}", to_name=f"User {n}", subject=f"Hello {n}",
                    text="Body", message_id=f"<m{n}@{domain}>")
        message = build_message(mail, stack.settings.mail_from)
        await aiosmtplib.send(message.data, sender=message.sender,
                              recipients=[message.recipient],
                              hostname=endpoints.smtp_host, port=endpoints.smtp_port)

    with stack.client() as client:
        listing = client.get("/api/outbox", params={"limit": 1000}).json()
        mine = [m for m in listing["messages"] if m["to"][0].endswith(domain)]
        assert [m["subject"] for m in mine] == ["Hello 2", "Hello 1", "Hello 0"]  # newest first
        assert mine[0]["message_id"] == f"<m2@{domain}>"

        one = client.get("/api/outbox", params={"to": f"user1@{domain}"}).json()["messages"]
        assert [m["subject"] for m in one] == ["Hello 1"]

        part = client.get("/api/outbox", params={"to": domain.upper()}).json()
        assert part["matched"] == 3 and part["total"] >= 3

        raw = client.get(f"/api/outbox/{one[0]['key']}")
        assert raw.status_code == 200 and "Subject: Hello 1" in raw.text


def test_outbox_rejects_bad_query_with_field_name(api) -> None:
    response = api.get("/api/outbox", params={"limit": 0})
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "query.limit"


def test_unknown_route_is_404_not_500(api) -> None:
    assert api.get("/api/nothing-here").status_code == 404
