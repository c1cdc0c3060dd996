"""Secrets the application makes itself: the admin token, and the signed customer
tokens and the links that carry them (unsubscribe, signup confirmation).

In local mode the admin token is generated on first run and kept in
`<data_dir>/admin_token` (mode 0600); there is no default password anywhere. The
same file's secret keys the HMAC that signs unsubscribe links.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from app.core.config import Settings

TOKEN_FILE = "admin_token"


def admin_token(settings: Settings) -> str:
    """The configured admin token, or the one generated for this data directory."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    path = settings.data_dir / TOKEN_FILE
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    # O_EXCL: two processes racing on first run agree on the winner's token.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def tokens_match(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


UNSUBSCRIBE, CONFIRM = "unsubscribe", "signup-confirm"  # what a customer link does


def _signing_key(secret: str, purpose: str) -> bytes:
    return hashlib.sha256(f"operator-comms/{purpose}/".encode() + secret.encode()).digest()


def sign_customer_id(customer_id: str, secret: str, purpose: str = UNSUBSCRIBE) -> str:
    """An unguessable, URL-safe token that names a customer for one `purpose` (a link
    signed for one purpose does not verify for another)."""
    mac = hmac.new(_signing_key(secret, purpose), customer_id.encode(),
                   hashlib.sha256).digest()[:16]
    payload = base64.urlsafe_b64encode(customer_id.encode()).decode().rstrip("=")
    return f"{payload}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def verify_customer_token(token: str, secret: str, purpose: str = UNSUBSCRIBE) -> str | None:
    """The customer id a token names, or None when it was not signed by us (for this)."""
    payload, _, _mac = token.partition(".")
    try:
        customer_id = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    expected = sign_customer_id(customer_id, secret, purpose)
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, which
    # was a 500 for a link such as /unsubscribe/.u®¸ until Schemathesis sent one).
    return customer_id if hmac.compare_digest(expected.encode(), token.encode()) else None


def unsubscribe_secret(admin: str) -> str:
    """The key for unsubscribe links, derived so the admin token itself never travels."""
    return hmac.new(admin.encode(), b"operator-comms/unsubscribe-key", hashlib.sha256).hexdigest()


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{token}"


def customer_unsubscribe_url(public_url: str, customer_id: str, secret: str) -> str:
    """The customer's own signed one-click unsubscribe link."""
    return unsubscribe_url(public_url, sign_customer_id(customer_id, secret))


def signup_confirm_url(public_url: str, customer_id: str, secret: str) -> str:
    """The link that confirms an email signup (double opt-in)."""
    return (f"{public_url.rstrip('/')}/signup/confirm/"
            f"{sign_customer_id(customer_id, secret, CONFIRM)}")
