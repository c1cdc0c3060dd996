"""Traces and log lines as the `COMMS_OTLP_*` and `COMMS_LOG_*` settings ask
(`app.observability.tracing`, `app.observability.logs`): `setup` at the start of every
process that runs the app's code (idempotent and cheap, so a send task makes it at every
start), and what Ray's own processes need in their environment."""

from __future__ import annotations

from app.core.config import Telemetry
from app.observability import logs, tracing


def setup(telemetry: Telemetry, component: str) -> None:
    """Before the process's first database client (its commands become spans)."""
    logs.configure(telemetry, component)
    tracing.configure(telemetry, component)


def ray_environment(telemetry: Telemetry) -> dict[str, str]:
    """What Ray's processes need in their environment when Ray starts (`operator-comms
    run` sets it before starting a local Ray; on a cluster it goes in the env file that
    `ray start` reads). Serve's proxies take their tracing from it (Ray 2.60 hands them
    no TracingConfig), and with JSON logs Serve's own lines go to its JSON files under
    `logs/serve/` instead of to stderr as text."""
    env: dict[str, str] = {}
    if telemetry.tracing:
        # The proxies' exporter reads the endpoint from here too (settings given to
        # `load_settings` as arguments, as the tests and benchmarks do, are not in it).
        env["COMMS_OTLP_ENDPOINT"] = telemetry.otlp_endpoint
        env["COMMS_OTLP_SAMPLE_RATIO"] = str(telemetry.otlp_sample_ratio)
        env["RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH"] = (
            "app.observability.tracing:serve_span_processors")
        env["RAY_SERVE_TRACING_SAMPLING_RATIO"] = str(telemetry.otlp_sample_ratio)
    if telemetry.log_format == "json":
        env["RAY_SERVE_LOG_TO_STDERR"] = "0"
    return env
