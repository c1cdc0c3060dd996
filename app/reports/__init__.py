"""Consolidated reports (performance, billing) read from the roll-ups, in JSON, CSV and
XLSX. Uses `app.core`, `app.audience` and `app.marketing` (the catalogue's prices).
"""
