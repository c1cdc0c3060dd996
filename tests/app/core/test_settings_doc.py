"""The configuration page is generated from `Settings`: it must say what the code says."""

from __future__ import annotations

from app.core import settings_doc
from app.core.config import Settings


def test_the_configuration_page_is_what_settings_render() -> None:
    assert settings_doc.PAGE.read_text() == settings_doc.render(), (
        "docs/configuration.md is out of date: run `operator-comms settings-doc --write`")


def test_every_setting_has_a_row_with_its_variable_and_default() -> None:
    page = settings_doc.render()
    for name in Settings.model_fields:
        assert f"| `COMMS_{name.upper()}` |" in page
    assert "| `COMMS_SMTP_PORT` | `587` |" in page
    assert '| `COMMS_EGRESS_ALLOW` | `[]` |' in page
    assert "| `COMMS_SMTP_PASSWORD` | unset |" in page
