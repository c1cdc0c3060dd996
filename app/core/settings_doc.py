"""The configuration reference, rendered from `Settings` itself: every field's variable,
default and description, in the order `config.py` declares them.

`operator-comms settings-doc --write` writes it to `docs/configuration.md`; a test
fails when the file differs from what this renders, so a setting cannot be added,
changed or removed without the page following.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic_core import PydanticUndefined

from app.core.config import ENV_PREFIX, Settings

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

HEADER = """# Configuration

<!-- Generated from `app/core/config.py` by `operator-comms settings-doc --write`;
     edit the settings' descriptions there, not this page. -->

Every setting is an environment variable with the `COMMS_` prefix. Lists and maps are
JSON (`COMMS_EGRESS_ALLOW='["crm.internal"]'`). An invalid value stops start-up with
one line naming the variable (`COMMS_SMTP_PORT=notaport make run` prints
`operator-comms: invalid configuration: COMMS_SMTP_PORT: Input should be a valid
integer ... (got 'notaport')`). Secrets are never logged or returned.

| variable | default | meaning |
|---|---|---|
"""


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Path):
        return f"`{value}`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | dict):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    if isinstance(value, str) and ("\n" in value or len(value) > 60):
        return "see `app/core/config.py`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render() -> str:
    """The configuration page, as Markdown."""
    rows = []
    for name, field in Settings.model_fields.items():
        if not field.description:
            raise ValueError(f"setting {name} has no description (a docstring below it)")
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {_cell(_default(field))} | "
                    f"{_cell(field.description)} |")
    return HEADER + "\n".join(rows) + "\n"


def write(path: Path = PAGE) -> None:
    path.write_text(render())
