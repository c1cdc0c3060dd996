"""Tracing and log settings, and what they switch on: pure logic, no Ray, no exporter.

Nothing in the pytest process sets an OTLP endpoint, so these also show tracing off:
no carrier, no span, no PyMongo listener. The end-to-end behaviour with tracing and
JSON logs on is tests/test_observability.py.
"""

from __future__ import annotations

import io
import json
import logging

import pytest
from pymongo import monitoring

from app.core.config import ConfigError, load_settings
from app.observability import logs, telemetry, tracing
from app.observability.telemetry import ray_environment
from deployments.log_context import LogContext

EXPORTER = "app.observability.telemetry:serve_span_processors"  # Serve imports it by name


def test_tracing_is_off_without_an_endpoint_and_costs_nothing() -> None:
    settings = load_settings()
    assert settings.otlp_endpoint is None and not settings.tracing
    assert tracing.configure(settings) is False
    assert tracing.carrier() is None and tracing.current_ids() is None
    with tracing.span("anything", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
                      campaign="c") as span:
        span.set_attribute("sent", 1)  # taken and dropped
    assert not any(type(listener).__name__ == "CommandTracer"
                   for listener in monitoring._LISTENERS.command_listeners)
    assert ray_environment(settings) == {}


@pytest.mark.parametrize(("field", "value", "variable"), [
    ("otlp_endpoint", "collector:4318", "COMMS_OTLP_ENDPOINT"),
    ("otlp_sample_ratio", 1.5, "COMMS_OTLP_SAMPLE_RATIO"),
    ("log_format", "xml", "COMMS_LOG_FORMAT"),
    ("log_level", "CHATTY", "COMMS_LOG_LEVEL"),
])
def test_bad_telemetry_settings_name_their_variable(field, value, variable) -> None:
    with pytest.raises(ConfigError, match=variable):
        load_settings(**{field: value})


def test_ray_gets_serves_tracing_and_log_switches_when_they_are_on() -> None:
    settings = load_settings(otlp_endpoint="http://collector:4318", otlp_sample_ratio=0.25,
                             log_format="json")
    assert ray_environment(settings) == {
        "COMMS_OTLP_ENDPOINT": "http://collector:4318", "COMMS_OTLP_SAMPLE_RATIO": "0.25",
        "RAY_SERVE_TRACING_EXPORTER_IMPORT_PATH": EXPORTER,
        "RAY_SERVE_TRACING_SAMPLING_RATIO": "0.25",
        "RAY_SERVE_LOG_TO_STDERR": "0",
    }
    assert telemetry.serve_tracing_config(settings) == {
        "enabled": True, "exporter_import_path": EXPORTER,
        "sampling_ratio": 0.25}


def _json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.json_formatter())
    handler.addFilter(logs.ContextFilter("send_task"))
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def test_json_lines_carry_the_bound_fields_inside_the_block_only() -> None:
    logger, out = _json_logger("operator_comms.test_json")
    with logs.bound(campaign_id="c1", session_id=None):
        logger.info("batch %s: %s", "c1:000", "10 sent")
    logger.warning("outside")
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert inside == {"time": inside["time"], "level": "INFO",
                      "logger": "operator_comms.test_json", "message": "batch c1:000: 10 sent",
                      "component": "send_task", "campaign_id": "c1"}
    assert outside["level"] == "WARNING" and "campaign_id" not in outside


def test_a_json_line_never_shows_a_secret_from_the_settings() -> None:
    logger, out = _json_logger("operator_comms.test_secret")
    settings = load_settings(smtp_host="smtp.example", smtp_password="hunter2-secret",
                             admin_token="a-long-admin-token-of-32-chars!!")
    logger.info("settings: %r", settings)
    line = json.loads(out.getvalue())
    assert "hunter2-secret" not in out.getvalue()
    assert "a-long-admin-token" not in out.getvalue()
    assert "smtp.example" in line["message"]  # the line is there, the secrets masked


async def _fields_seen_by_the_app(path: str, headers: list) -> dict:
    seen: dict = {}

    async def app(scope, receive, send) -> None:
        seen.update(logs._context.get() or {})

    await LogContext(app)({"type": "http", "path": path, "headers": headers}, None, None)
    return seen


async def test_a_requests_log_fields_come_from_its_path_and_request_id(monkeypatch) -> None:
    monkeypatch.setattr(logs, "_json", True)
    request = [(b"x-request-id", b"r-1")]
    assert await _fields_seen_by_the_app("/api/campaigns/0123456789abcdef/launch",
                                         request) == {"campaign_id": "0123456789abcdef",
                                                      "request_id": "r-1"}
    session = "0123456789abcdef0123456789abcdef"
    assert await _fields_seen_by_the_app(f"/chat/api/sessions/{session}/messages", []) == \
        {"session_id": session}
    assert await _fields_seen_by_the_app("/api/campaigns/preview", []) == {}
    monkeypatch.setattr(logs, "_json", False)  # text logs: nothing bound, nothing spent
    assert await _fields_seen_by_the_app("/api/campaigns/0123456789abcdef", request) == {}
