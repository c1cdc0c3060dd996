"""Settings: defaults run locally; bad values give one line naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.config import ConfigError, load_settings


def test_defaults_need_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COMMS_MONGODB_URI", "COMMS_SMTP_HOST", "COMMS_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.embedded_mongodb and settings.embedded_smtp
    assert settings.marketing_cooldown_s == 10.0
    assert settings.marketing_discount_pct == 20.0
    assert settings.data_dir == (Path.cwd() / ".data").resolve()


def test_bad_port_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMS_SMTP_PORT", "notaport")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "COMMS_SMTP_PORT" in message and "notaport" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("variable", "value"),
    [("COMMS_SMTP_PORT", "70000"), ("COMMS_MARKETING_COOLDOWN_S", "-1"),
     ("COMMS_MARKETING_DISCOUNT_PCT", "120"), ("COMMS_MONGODB_URI", "postgres://x")],
)
def test_nonsense_is_refused(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_secrets_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMS_ADMIN_TOKEN", "tooShortSecret")
    monkeypatch.setenv("COMMS_MONGODB_URI", "mongo://user:hunter2@db")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "COMMS_ADMIN_TOKEN" in str(caught.value) and "COMMS_MONGODB_URI" in str(caught.value)
    assert "tooShortSecret" not in str(caught.value) and "hunter2" not in str(caught.value)


def test_tls_modes_are_exclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMS_SMTP_TLS", "true")
    monkeypatch.setenv("COMMS_SMTP_STARTTLS", "true")
    with pytest.raises(ConfigError, match="exclusive"):
        load_settings()


def test_data_dir_is_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COMMS_DATA_DIR", "state")
    assert load_settings().data_dir == tmp_path / "state"


def test_imap_host_needs_a_login_and_the_password_is_never_echoed() -> None:
    with pytest.raises(ConfigError, match="COMMS_IMAP_USER and COMMS_IMAP_PASSWORD"):
        load_settings(imap_host="imap.operator.example")
    with pytest.raises(ConfigError) as problem:
        load_settings(imap_host="imap.operator.example", imap_user="u",
                      imap_password="hunter2-secret", imap_port="notaport")
    assert "COMMS_IMAP_PORT" in str(problem.value)
    assert "hunter2-secret" not in str(problem.value)
    settings = load_settings(imap_host="imap.operator.example", imap_user="u",
                             imap_password="hunter2-secret")
    assert settings.signup_enabled and "hunter2-secret" not in repr(settings)
    assert not load_settings().signup_enabled
