"""Health, auth and the outbox, over real HTTP through the Serve proxy."""

from __future__ import annotations

import re

import aiosmtplib
import httpx
import pytest
import ray

from app.channels.email.mailer import Mail, build_message
from tests.deployments.test_chat import new_session
from tests.utils.campaigns import create_campaign, finished, generate_audience, launch, wait_for
from tests.utils.stack import Stack, unique_domain
from tests.utils.waiting import wait_until


def test_public_health_is_liveness_only_and_the_details_need_a_sign_in(stack: Stack) -> None:
    with stack.client(admin=False) as client:
        response = client.get("/api/health")
        assert response.status_code == 200 and response.json() == {"status": "ok"}
        assert client.get("/api/health/details").status_code == 401
    with stack.client() as client:
        details = client.get("/api/health/details")
    assert details.status_code == 200
    body = details.json()
    assert body["down"] == []
    assert body["mongodb"]["status"] == body["smtp"]["status"] == body["ray"]["status"] == "up"
    assert body["mode"] == {"mongodb": "embedded", "smtp": "embedded", "smpp": "embedded"}


def test_every_route_its_rate_and_its_health_are_live_for_operators(stack: Stack, api
                                                                     ) -> None:
    """/api/routes lists each configured relay and SMSC; what send tasks tell the rate
    limiter (a route's clean and "slow down" answers with a reservation; a breaker
    taking it out, or hearing it again) shows there, and an outage in the health."""
    from actors import registry

    routes = api.get("/api/routes").json()["routes"]
    assert {routes["relay"]["channel"], routes["smsc"]["channel"]} == {"email", "sms"}
    assert routes["relay"]["state"] == "in service" and routes["relay"]["weight"] == 1.0
    limiter = registry.find(registry.RATE_LIMITER)
    try:
        ray.get(limiter.reserve.remote({"relay": 50.0}, 1, {"relay": (3, 2)}))
        route = api.get("/api/routes").json()["routes"]["relay"]
        assert (route["rate_per_s"], route["ceiling_per_s"]) == (35.0, 50.0)
        assert (route["throttled"], route["clean"], route["cuts"]) == (2, 3, 1)
        ray.get(limiter.route_event.remote("smsc", False, "ConnectionRefusedError"))
        route = api.get("/api/routes").json()["routes"]["smsc"]
        assert (route["state"], route["outages"]) == ("out", 1)
        assert route["last_error"] == "ConnectionRefusedError"
        details = api.get("/api/health/details")
        assert details.status_code == 503 and details.json()["down"] == ["route smsc"]
        assert details.json()["routes"]["smsc"] == {"status": "down",
                                                    "error": "ConnectionRefusedError"}
    finally:
        ray.get(limiter.route_event.remote("smsc", True, None))
        ray.get(limiter.forget.remote("relay"))
    assert api.get("/api/health/details").status_code == 200
    assert "rate_per_s" not in api.get("/api/routes").json()["routes"]["relay"]


@pytest.mark.parametrize("path", ["/api/outbox", "/api/outbox/missing", "/api/routes"])
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


def test_app_metrics_reach_rays_prometheus_endpoint(stack: Stack, api) -> None:
    """A campaign's sends and a chat turn show up on the node's metrics endpoint, which
    monitoring/prometheus.yml scrapes, under the names the Grafana dashboard uses."""
    domain = unique_domain("metrics")
    campaign = create_campaign(api, generate_audience(api, 3, domain))
    launch(api, campaign, workers=1)
    wait_for(api, campaign, finished)
    session = new_session(stack)
    with stack.client(admin=False) as client:
        assert client.post(f"/chat/api/sessions/{session['session_id']}/messages",
                           json={"text": "1"}, headers={
                               "Authorization": f"Bearer {session['token']}"}).status_code == 200

    def scraped() -> str | None:
        text = "".join(
            httpx.get(f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}"
                      "/metrics", timeout=10).text for node in ray.nodes() if node["Alive"])
        wanted = ('ray_comms_messages_total{', 'status="sent"', 'channel="email"',
                  "ray_comms_send_latency_ms_bucket", "ray_comms_chat_turns_total{")
        return text if all(part in text for part in wanted) else None

    # Ray's agents report every few seconds: wait for the export, not for a timing.
    text = wait_until(scraped, timeout_s=90, what="the app's metrics on the endpoint")
    assert re.search(r'ray_comms_chat_turns_total\{[^}]*via="rest"', text)
