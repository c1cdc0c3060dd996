"""OpenTelemetry tracing: on when `COMMS_OTLP_ENDPOINT` is set, and then only.

One trace follows a request from Serve's proxy through the replicas (Serve's own
tracing, `TracingConfig`, which calls `telemetry.serve_span_processors` in every proxy and
replica), and on through the actors and send tasks it reaches: the caller hands the
callee `carrier()`, the W3C trace context as a small dict, and the callee opens its
span under it with `span(name, parent=carrier)`. A campaign launch is one trace (the
HTTP request, the runner, a span per send batch in the worker that sent it); a chat
turn is one trace (proxy, replica, its MongoDB commands, the hub, marketing).

Off, nothing is installed: `carrier()` is None, `span()` is a shared no-op, and PyMongo
has no listener. Spans are batched and sent over OTLP/HTTP by a background thread.
No Ray import here: the actors and tasks call in with their settings.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from app.core.config import Telemetry

SERVICE = "operator-comms"
TRACER = "operator_comms"

_lock = threading.Lock()
_exporting = False   # this process sends spans (a processor is on the provider)
_propagator = TraceContextTextMapPropagator()


def _processor(settings: Telemetry):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint = str(settings.otlp_endpoint).rstrip("/") + "/v1/traces"
    return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))


def _instrument_pymongo() -> None:
    # A command listener for the clients created from now on; `configure` runs before a
    # process makes its client (replica and actor constructors, the start of a task).
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    PymongoInstrumentor().instrument()


def configure(settings: Telemetry, component: str | None = None) -> bool:
    """Trace in this process if the settings ask for it (idempotent, cheap to repeat).
    Serve has already installed the provider in its replicas; elsewhere this does, and
    its spans name the process (`process.pid`) and what runs there (`comms.component`)."""
    global _exporting
    if _exporting or not settings.tracing:
        return _exporting
    with _lock:
        if _exporting:
            return True
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        installed = trace.get_tracer_provider()
        if isinstance(installed, TracerProvider):
            # Serve's, in a replica whose exporter found no endpoint in the environment:
            # ours goes on it (a provider can be set once per process).
            installed.add_span_processor(_processor(settings))
        else:
            provider = TracerProvider(
                resource=Resource.create({"service.name": SERVICE, "process.pid": os.getpid(),
                                          "comms.component": component or "process"}),
                sampler=ParentBased(TraceIdRatioBased(settings.otlp_sample_ratio)))
            provider.add_span_processor(_processor(settings))
            trace.set_tracer_provider(provider)
        _instrument_pymongo()
        _exporting = True
        return True


def serve_processors(settings: Telemetry) -> list:
    """The span processors of a Serve proxy or replica (none with tracing off); called
    by `app.observability.telemetry.serve_span_processors`, Serve's exporter, before
    Serve installs its provider, so the service name set here is the one it reads."""
    global _exporting
    if not settings.tracing:
        return []
    with _lock:
        if _exporting:
            return []
        os.environ.setdefault("OTEL_SERVICE_NAME", SERVICE)
        _instrument_pymongo()
        _exporting = True
        return [_processor(settings)]


def carrier() -> dict[str, str] | None:
    """The current trace context, to hand to an actor or a task; None when off."""
    if not _exporting:
        return None
    headers: dict[str, str] = {}
    _propagator.inject(headers)
    return headers or None


@contextlib.contextmanager
def span(name: str, parent: dict[str, str] | None = None, *,
         kind: SpanKind = SpanKind.INTERNAL, **attributes: Any) -> Iterator[Span]:
    """A span of this process, current inside the block: under `parent` (a carrier
    from another process) when given, else under the current span, else a new trace."""
    if not _exporting:
        yield trace.INVALID_SPAN  # takes attributes, keeps nothing
        return
    context = _propagator.extract(parent) if parent else None
    tracer = trace.get_tracer(TRACER)
    with tracer.start_as_current_span(
            name, context=context, kind=kind,
            attributes={k: v for k, v in attributes.items() if v is not None}) as current:
        yield current


@contextlib.contextmanager
def attached(parent: dict[str, str] | None) -> Iterator[None]:
    """Run the block in a carrier's context (no span of its own): what it calls on
    carries the trace on."""
    if not _exporting or not parent:
        yield
        return
    token = otel_context.attach(_propagator.extract(parent))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None outside one."""
    if not _exporting:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
