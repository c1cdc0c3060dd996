"""Tracked links and the open pixel (pure logic; the hits through the API are tested in
tests/deployments/test_campaigns.py)."""

from __future__ import annotations

import html
from urllib.parse import parse_qs, urlsplit

from app.channels.email import tracking
from app.core.signing_keys import LINKS, KeyRing

RING, PUBLIC = KeyRing.of("k" * 32), "https://comms.example"
KEY = RING.signing(LINKS)
UNSUB = "https://comms.example/unsubscribe/abc.def"


def test_a_token_names_its_delivery_and_nothing_else() -> None:
    token = tracking.sign(tracking.OPEN, "camp:cust1", KEY)
    assert tracking.verify(tracking.OPEN, token, RING) == "camp:cust1"
    assert tracking.verify(tracking.CLICK, token, RING) is None  # another kind
    assert tracking.verify(tracking.OPEN, token, KeyRing.of("other secret")) is None
    forged = tracking.sign(tracking.OPEN, "camp:cust2", KeyRing.of("guessed").signing(LINKS))
    assert tracking.verify(tracking.OPEN, forged, RING) is None
    payload, mac, kid = token.split(".")
    assert kid == KEY.kid
    assert tracking.verify(tracking.OPEN, f"{payload}x.{mac}.{kid}", RING) is None
    assert tracking.verify(tracking.OPEN, f"{payload}.{mac}.other", RING) is None
    assert tracking.verify(tracking.OPEN, f"{payload}.{mac}", RING) is None  # no legacy key
    assert tracking.verify(tracking.OPEN, "%%%.®", RING) is None  # garbled


def test_a_click_token_holds_for_its_own_link_only() -> None:
    url = tracking.click_url(PUBLIC, "camp:cust1", KEY, "https://shop.example/a?b=1&c=2")
    parts = urlsplit(url)
    token = parts.path.rsplit("/", 1)[1]
    target = parse_qs(parts.query)["u"][0]
    assert target == "https://shop.example/a?b=1&c=2"
    assert tracking.verify(tracking.CLICK, token, RING, target) == "camp:cust1"
    assert tracking.verify(tracking.CLICK, token, RING, "https://evil.example") is None


def test_links_are_rewritten_and_the_pixel_added_but_the_unsubscribe_link_kept() -> None:
    text = f"Hi! See https://shop.example/plan?x=1&y=2 now.\nUnsubscribe: {UNSUB}\n"
    body = (f'<html><body><p><a href="https://shop.example/plan?x=1&amp;y=2">plan</a> '
            f"<a class='b' href='http://old.example/'>old</a> <a href=\"mailto:a@b.c\">m</a>"
            f' <a href="{UNSUB}">unsubscribe</a></p></body></html>')
    new_text, new_html = tracking.instrument(
        text, body, delivery_id="camp:cust1", opens=True, clicks=True, public_url=PUBLIC,
        key=KEY, keep=(UNSUB,))

    tracked = tracking.click_url(PUBLIC, "camp:cust1", KEY, "https://shop.example/plan?x=1&y=2")
    assert f"See {tracked} now." in new_text and f"Unsubscribe: {UNSUB}\n" in new_text
    assert f'href="{html.escape(tracked)}"' in new_html
    assert "href='" + html.escape(tracking.click_url(
        PUBLIC, "camp:cust1", KEY, "http://old.example/")) + "'" in new_html
    assert 'href="mailto:a@b.c"' in new_html and f'href="{UNSUB}"' in new_html
    pixel = html.escape(tracking.open_url(PUBLIC, "camp:cust1", KEY))
    assert new_html.endswith(f'<img src="{pixel}" width="1" height="1" alt="" '
                             'style="display:none"></body></html>')


def test_only_what_the_campaign_asks_for_is_tracked() -> None:
    text, body = "Go to https://a.example/", '<a href="https://a.example/">a</a>'
    assert tracking.instrument(text, body, delivery_id="d", opens=False, clicks=False,
                               public_url=PUBLIC, key=KEY) == (text, body)
    opens_only = tracking.instrument(text, body, delivery_id="d", opens=True, clicks=False,
                                     public_url=PUBLIC, key=KEY)
    assert opens_only[0] == text and opens_only[1].startswith(body + "<img ")
    # A text-only email has nowhere for an image: its opens cannot be seen.
    assert tracking.instrument(text, None, delivery_id="d", opens=True, clicks=False,
                               public_url=PUBLIC, key=KEY) == (text, None)
