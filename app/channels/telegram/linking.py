"""The deep link that ties a customer's Telegram chat to them: `https://t.me/<bot>?start=
<parameter>`, the parameter signed with a link key, so the identity is proven (the
customer got the link from us: an email, a verified chat) and never typed.

Telegram allows 1-64 characters of `A-Za-z0-9_-` in a start parameter, and no separator
outside base64url's own alphabet; so the parameter is a fixed-width 16-character MAC
(12 bytes, base64url) followed by the base64url customer id (ids up to 36 bytes fit), and
it is checked against every link key that verifies (a handful). Signed for its own
purpose: an unsubscribe token does not link a chat, nor the reverse.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote

from app.core.signing_keys import LINKS, KeyRing, SigningKey

PURPOSE = b"operator-comms/telegram-link/"
MAC_CHARS = 16
MAX_PARAMETER = 64


class TooLong(ValueError):
    """A customer id too long for a Telegram start parameter."""


def _mac(secret: str, customer_id: str) -> str:
    digest = hmac.new(hashlib.sha256(PURPOSE + secret.encode()).digest(),
                      customer_id.encode(), hashlib.sha256).digest()[:12]
    return base64.urlsafe_b64encode(digest).decode()


def start_parameter(customer_id: str, key: SigningKey) -> str:
    encoded = base64.urlsafe_b64encode(customer_id.encode()).decode().rstrip("=")
    parameter = _mac(key.secret, customer_id) + encoded
    if len(parameter) > MAX_PARAMETER:
        raise TooLong(f"customer id {customer_id!r} is too long for a Telegram link")
    return parameter


def deep_link(bot_username: str, customer_id: str, key: SigningKey) -> str:
    return f"https://t.me/{quote(bot_username)}?start={start_parameter(customer_id, key)}"


def customer_of(parameter: str, keys: KeyRing) -> str | None:
    """The customer a start parameter names, if one of our link keys signed it."""
    if not (MAC_CHARS < len(parameter) <= MAX_PARAMETER) or not parameter.isascii():
        return None
    mac, encoded = parameter[:MAC_CHARS], parameter[MAC_CHARS:]
    try:
        customer_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    for key in keys.keys:
        if key.purpose == LINKS and key.retired_at is None and hmac.compare_digest(
                _mac(key.secret, customer_id).encode(), mac.encode()):
            return customer_id
    return None
