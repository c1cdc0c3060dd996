"""Secrets the application makes itself: the admin token, and the signed customer
tokens and the links that carry them (unsubscribe, signup confirmation).

In local mode the admin token is generated on first run and kept in
`<data_dir>/admin_token` (mode 0600); there is no default password anywhere. Customer
links are signed with the stored link keys (`app.core.signing_keys`): a token is
`<payload>.<mac>.<kid>`, and one without a kid was signed by the legacy key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from app.core.config import Settings
from app.core.signing_keys import LEGACY, LINKS, KeyRing, SigningKey

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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def with_kid(signed: str, key: SigningKey) -> str:
    """A signed `<payload>.<mac>` with the id of the key that signed it appended."""
    return signed if key.kid == LEGACY else f"{signed}.{key.kid}"


def kid_of(token: str) -> str:
    """The id of the key a token names (`legacy` when it names none)."""
    parts = token.split(".")
    return parts[2] if len(parts) == 3 else LEGACY


def opened(token: str) -> tuple[str, str] | None:
    """(the text a token's payload carries, its kid), or None when it is garbled."""
    parts = token.split(".")
    if len(parts) not in (2, 3):
        return None
    payload = parts[0]
    try:
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return text, kid_of(token)


def same_token(expected: str, given: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, which
    # was a 500 for a link such as /unsubscribe/.u®¸ until Schemathesis sent one).
    return hmac.compare_digest(expected.encode(), given.encode())


def sign_customer_id(customer_id: str, key: SigningKey, purpose: str = UNSUBSCRIBE) -> str:
    """An unguessable, URL-safe token that names a customer for one `purpose` (a link
    signed for one purpose does not verify for another)."""
    mac = hmac.new(_signing_key(key.secret, purpose), customer_id.encode(),
                   hashlib.sha256).digest()[:16]
    return with_kid(f"{_b64(customer_id.encode())}.{_b64(mac)}", key)


def verify_customer_token(token: str, keys: KeyRing, purpose: str = UNSUBSCRIBE
                          ) -> str | None:
    """The customer id a token names, or None when it was not signed by one of our
    active link keys (for this purpose)."""
    parts = opened(token)
    key = keys.verifying(LINKS, parts[1]) if parts else None
    if parts is None or key is None:
        return None
    customer_id = parts[0]
    return customer_id if same_token(sign_customer_id(customer_id, key, purpose),
                                     token) else None


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{token}"


def customer_unsubscribe_url(public_url: str, customer_id: str, key: SigningKey) -> str:
    """The customer's own signed one-click unsubscribe link."""
    return unsubscribe_url(public_url, sign_customer_id(customer_id, key))


def signup_confirm_url(public_url: str, customer_id: str, key: SigningKey) -> str:
    """The link that confirms an email signup (double opt-in)."""
    return (f"{public_url.rstrip('/')}/signup/confirm/"
            f"{sign_customer_id(customer_id, key, CONFIRM)}")
