"""Traces and log lines as the `COMMS_OTLP_*` and `COMMS_LOG_*` settings ask
(`app.observability.tracing`, `app.observability.logs`): `setup` at the start of every
process that runs the app's code (idempotent and cheap, so a send task makes it at every
start), and what Ray's own processes need in their environment."""

from __future__ import annotations

from app.core.config import Telemetry
from app.observability import logs, tracing

EXPORTER = f"{__name__}:serve_span_processors"


def setup(telemetry: Telemetry, component: str) -> None:
    """Before the process's first database client (its commands become spans)."""
    logs.configure(telemetry, component)
    tracing.configure(telemetry, component)


def rss_mb() -> float | None:
    """This process's resident memory in MB (Linux; None elsewhere), for actors' stats."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


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
        env["COMMS_OTLP_ENDPOINT"] = str(telemetry.otlp_endpoint)
        env["COMMS_OTLP_SAMPLE_RATIO"] = str(telemetry.otlp_sample_ratio)
        env["RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH"] = EXPORTER
        env["RAY_SERVE_TRACING_SAMPLING_RATIO"] = str(telemetry.otlp_sample_ratio)
    if telemetry.log_format == "json":
        env["RAY_SERVE_LOG_TO_STDERR"] = "0"
    return env


def serve_span_processors() -> list:
    """Serve's tracing exporter (`TracingConfig.exporter_import_path`): runs first in
    each proxy and replica. The proxy runs no other code of ours, so its log lines (the
    exporter's own warnings, say) are set up here; a replica names itself later, in its
    constructor."""
    settings = Telemetry()
    logs.configure(settings, "serve")
    return tracing.serve_processors(settings)


def serve_tracing_config(settings: Telemetry) -> dict:
    """What `serve.start(tracing_config=...)` gets: on with an endpoint, else off."""
    return {"enabled": settings.tracing, "exporter_import_path": EXPORTER,
            "sampling_ratio": settings.otlp_sample_ratio}
