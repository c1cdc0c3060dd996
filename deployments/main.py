"""Composes the two Serve applications and deploys them.

- `operator-comms` at `/`: the Dashboard ingress (`/`, `/api`, `/unsubscribe`).
- `operator-comms-chat` at `/chat`: the ChatBot ingress (page, REST, WebSocket).

`serve run serve_config.yaml` deploys both (its builders prepare the cluster first:
`deployments.cluster`); `deploy()` does the same from the launcher
(`deployments.launcher`: `make run`, the tests, the benchmarks). `app` and `chat_app`
are the typed builders the config names (`serve run deployments.main:app
dashboard_replicas=2` runs one); unknown arguments are refused. Settings come from
`COMMS_*` variables.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve import Application

from app.core.config import ConfigError, Settings, Telemetry, load_settings
from app.observability import telemetry as telemetry_setup
from deployments import options
from deployments.chatbot import ChatBot
from deployments.cluster import prepare_cluster
from deployments.dashboard import Dashboard

APP_NAME = "operator-comms"
CHAT_APP_NAME = "operator-comms-chat"
CHAT_PREFIX = options.CHAT_PREFIX


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dashboard_replicas: int = Field(default=1, ge=1, le=64)
    chatbot_replicas: int = Field(default=1, ge=1, le=64)
    settings: dict[str, Any] = Field(default_factory=dict, description="Settings overrides")


def _args_and_settings(args: dict[str, Any] | AppArgs) -> tuple[AppArgs, Settings]:
    if not isinstance(args, AppArgs):
        args = AppArgs.model_validate(args)
    try:
        return args, load_settings(**args.settings)
    except ConfigError as exc:
        sys.exit(f"operator-comms: {exc}")


def build_app(args: dict[str, Any] | AppArgs) -> Application:
    """The dashboard application, as `serve run` and `serve deploy` build it: the cluster
    is prepared first (services, migrations, actors), as the launcher does."""
    args, settings = _args_and_settings(args)
    prepare_cluster(settings)
    return dashboard_app(args, settings)


def build_chat_app(args: dict[str, Any] | AppArgs) -> Application:
    """The chat application, as `serve run` and `serve deploy` build it."""
    args, settings = _args_and_settings(args)
    prepare_cluster(settings)
    return chat_application(args, settings)


def _placement(settings: Settings, defaults: dict) -> dict:
    placement = {"resources": settings.actor_resources} if settings.actor_resources else {}
    return {**defaults["ray_actor_options"], **placement}


def dashboard_app(args: AppArgs, settings: Settings) -> Application:
    return Dashboard.options(
        num_replicas=args.dashboard_replicas, logging_config=options.logging_config(settings),
        ray_actor_options=_placement(settings, options.DASHBOARD)).bind(settings)


def chat_application(args: AppArgs, settings: Settings) -> Application:
    return ChatBot.options(
        num_replicas=args.chatbot_replicas, logging_config=options.logging_config(settings),
        ray_actor_options=_placement(settings, options.CHATBOT)).bind(settings)


def start_serve(host: str, port: int, telemetry: Telemetry | None = None,
                **options_: Any) -> None:
    """Start Serve's controller and proxies with the proxy's access log off (a line per
    request costs the proxy more than routing it); errors are still logged. With an OTLP
    endpoint, Serve traces each request from the proxy on (see `app.observability.telemetry`)."""
    telemetry = telemetry or Telemetry()
    serve.start(http_options={"host": host, "port": port},
                logging_config=options.logging_config(telemetry),
                tracing_config=telemetry_setup.serve_tracing_config(telemetry), **options_)


def deploy(args: AppArgs, settings: Settings) -> None:
    """Deploy both applications on the running Serve instance (what the config does)."""
    serve.run(dashboard_app(args, settings), name=APP_NAME, route_prefix="/")
    serve.run(chat_application(args, settings), name=CHAT_APP_NAME, route_prefix=CHAT_PREFIX)


app = build_app
chat_app = build_chat_app
