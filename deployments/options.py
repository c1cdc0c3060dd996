"""Deployment options in one place, with current Serve option names only.

Replicas are I/O-bound (MongoDB, SMTP, WebSockets): they ask for a fraction of a CPU
and accept many requests at once; Serve's default `max_ongoing_requests` (5) would
queue a dashboard behind a handful of open WebSockets.
"""

from __future__ import annotations

import os

from app.core.config import Telemetry

# Serve's controller reconciles every 0.1 s by default, idle or not: with the GCS calls
# each pass makes, the largest part of the idle app's CPU on a small machine. Every
# 0.5 s costs a fifth of that; a change (a replica to replace, a deployment to roll
# out) waits at most half a second longer. Read by the controller when it starts, so
# it goes in Ray's environment.
CHAT_PREFIX = "/chat"  # where the chat application is served (its webhooks under it)
SERVE_ENVIRONMENT = {"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5"}


def serve_environment() -> dict[str, str]:
    """For a Ray started here (`operator-comms run`, the tests, the benchmarks): Serve's
    settings above, except those already in the environment (the operator's win). On a
    cluster they go in the env file `ray start` reads on the head."""
    return {name: value for name, value in SERVE_ENVIRONMENT.items() if name not in os.environ}

# Access logs of every poll would drown what matters; errors are still logged.
LOGGING = {"enable_access_log": False, "log_level": "WARNING"}


# FastAPI's own telemetry off: Serve's proxy and replica spans are the request's (with
# the route), and FastAPI's would start a trace of their own (it takes its parent only
# from the request headers, which carry no context from the proxy).
FASTAPI_TELEMETRY = {"tracing": False, "metrics": False, "logs": False}


def logging_config(telemetry: Telemetry) -> dict:
    """Serve's logging for its proxies and the replicas (their files under
    `logs/serve/`): JSON when `COMMS_LOG_FORMAT=json`, at `COMMS_LOG_LEVEL`."""
    return {**LOGGING, "log_level": telemetry.log_level,
            "encoding": telemetry.log_format.upper()}


DASHBOARD = {
    "name": "Dashboard",
    "num_replicas": 1,
    "max_ongoing_requests": 200,
    "ray_actor_options": {"num_cpus": 0.25},
    "health_check_period_s": 10,
    "logging_config": LOGGING,
}

# Open WebSockets count as ongoing requests: leave room for calls beside them. Calls
# carrying `x-session-id` go to the replica that owns the session on a hash ring (the
# next one when it is full), where the session is remembered.
CHATBOT = {
    "name": "ChatBot",
    "num_replicas": 1,
    "max_ongoing_requests": 1000,
    "ray_actor_options": {"num_cpus": 0.25},
    "logging_config": LOGGING,
    "request_router_config": {
        "request_router_class":
            "ray.serve.experimental.consistent_hash_router:ConsistentHashRouter",
    },
}
