"""Log lines of every process that runs the app's code: text or JSON, one call each.

`configure(telemetry, component)` runs first thing in each replica, actor and send
task (`app.observability.telemetry.setup`), and in Serve's proxies (from the tracing
exporter Serve calls there, `app.observability.telemetry.serve_span_processors`). With
`COMMS_LOG_FORMAT=json` every handler Ray and Serve gave the process (the root logger's,
`ray`'s, `ray.serve`'s; all write the worker's stderr, which Ray keeps in
`logs/worker-*.err`) formats with python-json-logger: one object per line with the
time, level, logger, message and,
where one applies, the `trace_id` and `span_id` of the current span, and the
`request_id`, `campaign_id` and `session_id` bound with `bound(...)`. Python warnings
go through logging too.

Secrets are never in a line: settings hold them as `SecretStr`, whose repr is masked,
and the runtime and endpoint reprs hide theirs.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator

from app.core.config import Telemetry
from app.observability import tracing

APP_LOGGER = "operator_comms"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s -- %(message)s"
_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "operator_comms_log_context", default=None)
_configured = False
_json = False  # this process writes JSON lines
_context_filter: ContextFilter | None = None  # on its handlers, when it does


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Log lines written inside the block (and the tasks it starts) carry these fields."""
    token = _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v}})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: str | None) -> None:
    """Like `bound`, for the rest of the current task (a request, an asyncio task)."""
    _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v}})


class ContextFilter(logging.Filter):
    """Adds the bound fields and the current span's ids to each record it passes."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        record.component = self.component
        for key, value in (_context.get() or {}).items():
            setattr(record, key, value)
        ids = tracing.current_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return True


def structured() -> bool:
    """Whether this process writes JSON lines (and the bound fields are worth binding)."""
    return _json


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    return JsonFormatter("{asctime}{levelname}{name}{message}", style="{",
                         rename_fields={"asctime": "time", "levelname": "level",
                                        "name": "logger"})


def configure(telemetry: Telemetry, component: str) -> None:
    """This process's log format and the app's level (idempotent)."""
    global _configured, _json, _context_filter
    if _configured:
        if _context_filter is not None:  # a replica, set up first by Serve's exporter
            _context_filter.component = component
        return
    _configured = True
    logging.getLogger(APP_LOGGER).setLevel(telemetry.log_level)
    for noisy in ("httpx", "httpcore", "telegram"):  # their INFO lines show request URLs,
        logging.getLogger(noisy).setLevel(logging.WARNING)  # and a Bot API URL holds the
        # bot's token
    root = logging.getLogger()
    if not root.handlers:
        # Without one, Python's last resort shows warnings only, so `COMMS_LOG_LEVEL=INFO`
        # would show nothing. The process's own stderr: in a replica `sys.stderr` may be
        # Serve's redirect into its logger, which would wrap each line in another.
        stream: logging.Handler = logging.StreamHandler(sys.__stderr__)
        stream.setFormatter(logging.Formatter(TEXT_FORMAT))
        root.addHandler(stream)
    if telemetry.log_format != "json":
        return
    _json = True
    logging.captureWarnings(True)
    formatter = json_formatter()
    _context_filter = ContextFilter(component)
    for name in (None, "ray", "ray.serve"):
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)
            handler.addFilter(_context_filter)
