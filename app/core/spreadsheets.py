"""Text a spreadsheet would run as a formula when someone opens an export of it (CSV
injection, OWASP): how to tell it, and the cell that shows it as text instead."""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def looks_like_formula(value: str) -> bool:
    if not value.startswith(FORMULA_STARTS):
        return False
    try:
        float(value)  # "-12.50" is a number, not a formula
    except ValueError:
        return True
    return False


def safe_cell(value: Any) -> Any:
    """A formula-looking text gets a leading apostrophe; numbers stay numbers."""
    if isinstance(value, str) and looks_like_formula(value):
        return "'" + value
    return value
