"""Traces (OpenTelemetry), JSON log lines and the environment Ray's own processes
need for them. Uses only `app.core`.
"""
