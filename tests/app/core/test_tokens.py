"""Admin token persistence and signed unsubscribe tokens."""

from __future__ import annotations

from pathlib import Path

from app.core.config import load_settings
from app.core.tokens import admin_token, sign_customer_id, verify_customer_token


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
    token = sign_customer_id("cust-42", "secret-a")
    assert verify_customer_token(token, "secret-a") == "cust-42"
    assert verify_customer_token(token, "secret-b") is None
    forged = sign_customer_id("cust-43", "secret-b")
    assert verify_customer_token(forged, "secret-a") is None
    assert verify_customer_token("garbage", "secret-a") is None
    assert verify_customer_token(token[:-2] + "AA", "secret-a") is None
    for odd in (".u®¸", "é.é", "", ".", "☃" * 50):
        assert verify_customer_token(odd, "secret-a") is None
