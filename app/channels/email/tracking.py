"""Open and click tracking of campaign emails: signed links, and what a hit records.

Optional per campaign (`tracking.opens`, `tracking.clicks`). When on, each email gets:
- opens: a 1x1 image at `/t/o/<token>.gif` at the end of its HTML part (a text-only
  email has nowhere to put one);
- clicks: every http(s) link of its HTML (`<a href>`) and text parts rewritten to
  `/t/c/<token>?u=<the link>`, which records the click and redirects there. The
  unsubscribe link is left as it is.

A token is the delivery id, an HMAC (keyed from a stored link key,
`app.core.signing_keys`) over the kind, the delivery id and, for a click, the link, and
the key's id: a token cannot be made for another delivery, nor turned into a redirect
to another address, and it keeps working until its key is retired. A token
that fails the check is refused before anything is read, so the answer says nothing
about whether a delivery exists.

A hit records, on the delivery, `opened` / `clicked` as `{first, last, count}`; the
first hit of a delivery also counts it once in the campaign's `counts.opened` /
`counts.clicked` and in its day's report roll-up (by the delivery's creation day).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
from datetime import datetime
from urllib.parse import quote

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from app.channels import confirmations as fallback
from app.core import rollups
from app.core.signing_keys import LINKS, KeyRing, SigningKey
from app.core.tokens import opened, same_token, with_kid

OPEN, CLICK = "opened", "clicked"
PIXEL_GIF = base64.b64decode(b"R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_HREF = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""",
                   re.IGNORECASE)
_BARE_URL = re.compile(r"""https?://[^\s<>"')\]]+""")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def _key(secret: str) -> bytes:
    return hashlib.sha256(b"operator-comms/tracking/" + secret.encode()).digest()


def sign(kind: str, delivery_id: str, key: SigningKey, url: str = "") -> str:
    mac = hmac.new(_key(key.secret), f"{kind}\n{delivery_id}\n{url}".encode(),
                   hashlib.sha256).digest()[:16]
    return with_kid(f"{_b64(delivery_id.encode())}.{_b64(mac)}", key)


def verify(kind: str, token: str, keys: KeyRing, url: str = "") -> str | None:
    """The delivery id the token was signed for (with this link), or None."""
    parts = opened(token)
    key = keys.verifying(LINKS, parts[1]) if parts else None
    if parts is None or key is None:
        return None
    delivery_id = parts[0]
    return delivery_id if same_token(sign(kind, delivery_id, key, url), token) else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def open_url(public_url: str, delivery_id: str, key: SigningKey) -> str:
    return f"{public_url.rstrip('/')}/t/o/{sign(OPEN, delivery_id, key)}.gif"


def click_url(public_url: str, delivery_id: str, key: SigningKey, url: str) -> str:
    return (f"{public_url.rstrip('/')}/t/c/{sign(CLICK, delivery_id, key, url)}"
            f"?u={quote(url, safe='')}")


def instrument(text: str, html_body: str | None, *, delivery_id: str, opens: bool,
               clicks: bool, public_url: str, key: SigningKey, keep: tuple[str, ...] = ()
               ) -> tuple[str, str | None]:
    """The email's text and HTML with tracked links and the open pixel; links in
    `keep` (the unsubscribe link) stay as they are."""
    def tracked(url: str) -> str:
        if url in keep:
            return url
        return click_url(public_url, delivery_id, key, url)

    if clicks:
        text = _BARE_URL.sub(lambda m: tracked(m.group(0)), text)
        if html_body is not None:
            html_body = _HREF.sub(
                lambda m: m.group(1) + m.group(2) + html.escape(
                    tracked(html.unescape(m.group(3)))) + m.group(2), html_body)
    if opens and html_body is not None:
        pixel = (f'<img src="{html.escape(open_url(public_url, delivery_id, key))}" '
                 'width="1" height="1" alt="" style="display:none">')
        ends = list(_BODY_END.finditer(html_body))
        html_body = (html_body[:ends[-1].start()] + pixel + html_body[ends[-1].start():]
                     if ends else html_body + pixel)
    return text, html_body


async def record(db: AsyncDatabase, kind: str, delivery_id: str, at: datetime) -> str | None:
    """A hit on a delivery; the channel that carried it when it was the delivery's first
    of this kind (then the campaign and its roll-up count it), else None. No delivery:
    nothing is written."""
    first = await db.deliveries.find_one_and_update(
        {"_id": delivery_id, f"{kind}.first": {"$exists": False}},
        {"$set": {f"{kind}.first": at, f"{kind}.last": at}, "$inc": {f"{kind}.count": 1}},
        projection={"campaign_id": 1, "created_at": 1, "last_attempt_at": 1, "channel": 1},
        return_document=ReturnDocument.AFTER)
    if first is None:
        await db.deliveries.update_one({"_id": delivery_id}, {
            "$set": {f"{kind}.last": at}, "$inc": {f"{kind}.count": 1}})
        return None
    await db.campaigns.update_one({"_id": first["campaign_id"]},
                                  {"$inc": {f"counts.{kind}": 1}})
    increments = rollups.Increments()
    increments.engaged(first["campaign_id"],
                       first.get("created_at") or first["last_attempt_at"], kind,
                       first.get("channel") or "email")
    await rollups.write(db, increments)
    channel = first.get("channel") or "email"
    if kind == OPEN:  # read: a fallback rule's wait for it ends
        await fallback.confirmed(db, channel, [delivery_id], fallback.READ)
    return channel
