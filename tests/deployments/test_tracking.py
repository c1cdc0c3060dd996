"""Open and click tracking end to end: a tracked campaign through the real API and
sink, its pixel and links fetched through the Serve proxy, the counts on the delivery,
the campaign view and the performance report."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
import ray
from pymongo import MongoClient

from tests.utils.campaigns import create_campaign, finished, import_audience, launch, wait_for
from tests.utils.stack import Stack, unique_domain

HTML = ('<html><body><p>Dear {{ name }}, see <a href="https://shop.example/plan?id=7&amp;'
        'src=mail">your plan</a>.</p><p><a href="{{ unsubscribe_url }}">unsubscribe</a>'
        '</p></body></html>')


def _html_part(raw: bytes) -> str:
    message = email.message_from_bytes(raw)
    for part in message.walk():
        if part.get_content_type() == "text/html":
            return part.get_payload(decode=True).decode()
    raise AssertionError("no HTML part")


def _local(url: str) -> str:
    parts = urlsplit(url.replace("&amp;", "&"))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_opens_and_clicks_are_recorded_once_per_delivery_and_reported(
        stack: Stack, api: httpx.Client) -> None:
    domain = unique_domain("track")
    import_audience(api, [f"a@{domain}", f"b@{domain}"], tag=domain)
    campaign_id = create_campaign(api, domain, body_html=HTML,
                                  tracking={"opens": True, "clicks": True})
    launch(api, campaign_id, workers=1)
    wait_for(api, campaign_id, finished)
    messages = api.get("/api/outbox", params={"to": f"a@{domain}"}).json()["messages"]
    page = _html_part(api.get(f"/api/outbox/{messages[0]['key']}").content)
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+\.gif)"', page).group(1)
    link = re.search(r'<a href="([^"]+/t/c/[^"]+)">your plan', page).group(1)
    assert "/unsubscribe/" in page and page.count("/t/c/") == 1  # unsubscribe untouched

    endpoints = ray.get(stack.services.endpoints.remote())
    db = MongoClient(endpoints.mongodb_uri)[stack.settings.mongodb_db]
    with stack.client(admin=False) as public:
        for _ in range(2):  # opened twice (a mail client fetching it again)
            image = public.get(_local(pixel))
            assert image.status_code == 200 and image.headers["content-type"] == "image/gif"
            assert image.headers["cache-control"].startswith("no-store")
        click = public.get(_local(link), follow_redirects=False)
        assert click.status_code == 302
        assert click.headers["location"] == "https://shop.example/plan?id=7&src=mail"

        # Forged: refused alike whether the delivery exists or not; never a redirect.
        token = _local(link).split("/t/c/", 1)[1].split("?", 1)[0]
        elsewhere = public.get(f"/t/c/{token}?u=https%3A%2F%2Fevil.example%2F",
                               follow_redirects=False)
        payload, mac, kid = token.split(".")
        other_mac = ("A" if mac[0] != "A" else "B") + mac[1:]
        existing = public.get(f"/t/o/{payload}.{other_mac}.{kid}.gif")
        missing = public.get(f"/t/o/bm9ib2R5OmF0YWxs.{other_mac}.{kid}.gif")  # "nobody:atall"
        for refused in (elsewhere, existing, missing):
            assert refused.status_code == 404 and "location" not in refused.headers
        assert existing.text == missing.text

    customer = db.customers.find_one({"email": f"a@{domain}"})
    delivery = db.deliveries.find_one({"_id": f"{campaign_id}:{customer['_id']}"})
    assert delivery["opened"]["count"] == 2 and delivery["clicked"]["count"] == 1
    assert delivery["opened"]["first"] <= delivery["opened"]["last"]
    view = api.get(f"/api/campaigns/{campaign_id}").json()
    assert (view["counts"]["opened"], view["counts"]["clicked"]) == (1, 1)
    assert view["rates"] == {"delivered": 1.0, "opened": 0.5, "clicked": 0.5}
    assert view["tracking"] == {"opens": True, "clicks": True}

    today = datetime.now(UTC).date()
    report = api.get("/api/reports/performance", params={
        "from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1)),
        "campaign": campaign_id}).json()
    [row] = report["campaigns"]
    assert (row["opened"], row["clicked"], row["open_rate"], row["click_rate"]) == (
        1, 1, 0.5, 0.5)
    drift = api.post("/api/reports/reconcile", params={
        "from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1)),
        "dry_run": "true"}).json()
    assert not [d for d in drift["drift"] if d["id"].startswith(campaign_id)], drift


def test_an_untracked_campaign_has_no_pixel_and_plain_links(api: httpx.Client) -> None:
    domain = unique_domain("notrack")
    import_audience(api, [f"c@{domain}"], tag=domain)
    campaign_id = create_campaign(api, domain, body_html=HTML)
    launch(api, campaign_id, workers=1)
    wait_for(api, campaign_id, finished)
    [message] = api.get("/api/outbox", params={"to": f"c@{domain}"}).json()["messages"]
    page = _html_part(api.get(f"/api/outbox/{message['key']}").content)
    assert "/t/o/" not in page and "/t/c/" not in page
    assert 'href="https://shop.example/plan?id=7&amp;src=mail"' in page
