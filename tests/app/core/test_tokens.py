"""Admin token persistence and signed unsubscribe tokens."""

from __future__ import annotations

from pathlib import Path

from app.core.config import load_settings
from app.core.signing_keys import LEGACY, LINKS, KeyRing, SigningKey, legacy_link_secret
from app.core.tokens import CONFIRM, admin_token, sign_customer_id, verify_customer_token

RING_A, RING_B = KeyRing.of("secret-a"), KeyRing.of("secret-b")
KEY_A, KEY_B = RING_A.signing(LINKS), RING_B.signing(LINKS)


def test_generated_token_is_kept_and_private(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, admin_token=None)
    first = admin_token(settings)
    assert len(first) >= 24
    assert admin_token(settings) == first
    assert (tmp_path / "admin_token").stat().st_mode & 0o077 == 0


def test_configured_token_wins(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, admin_token="a-configured-token-123")
    assert admin_token(settings) == "a-configured-token-123"
    assert not (tmp_path / "admin_token").exists()


def test_unsubscribe_token_round_trip_and_forgery() -> None:
    token = sign_customer_id("cust-42", KEY_A)
    assert token.endswith(f".{KEY_A.kid}")
    assert verify_customer_token(token, RING_A) == "cust-42"
    assert verify_customer_token(token, RING_B) is None
    assert verify_customer_token(token, RING_A, CONFIRM) is None  # another purpose
    forged = sign_customer_id("cust-43", KEY_B)
    assert verify_customer_token(forged, RING_A) is None
    assert verify_customer_token("garbage", RING_A) is None
    payload, mac, kid = token.split(".")
    assert verify_customer_token(f"{payload}.{mac[:-2]}AA.{kid}", RING_A) is None
    for odd in (".u®¸", "é.é", "", ".", "☃" * 50, "a.b.c.d", f"{payload}.{mac}.☃"):
        assert verify_customer_token(odd, RING_A) is None


def test_links_of_the_release_before_stored_keys_verify_with_the_legacy_key() -> None:
    """A token without a kid was signed by the key derived from the admin token: the
    legacy key (verify-only) takes it, a ring without it does not."""
    secret = legacy_link_secret("the-old-admin-token-0123456789")
    legacy = SigningKey(LEGACY, LINKS, secret, KEY_A.created_at, signs=False)
    old_link = sign_customer_id("cust-7", legacy)
    assert old_link.count(".") == 1  # the old shape: payload.mac
    ring = KeyRing(RING_A.keys + (legacy,))
    assert verify_customer_token(old_link, ring) == "cust-7"
    assert verify_customer_token(old_link, RING_A) is None
    assert ring.signing(LINKS) == KEY_A  # the legacy key never signs
