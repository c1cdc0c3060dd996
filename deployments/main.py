"""Composes the Serve application: `serve run deployments.main:app [key=value ...]`.

The Dashboard ingress serves `/`, `/api` and `/chat`; the ChatBot deployment arrives
in its constructor as a DeploymentHandle. Settings come from `COMMS_*` variables;
`app` is a typed builder, so unknown arguments are refused.
"""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from ray.serve import Application

from app.config import ConfigError, Settings, load_settings
from deployments import options
from deployments.chatbot import ChatBot
from deployments.dashboard import Dashboard


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dashboard_replicas: int = Field(default=1, ge=1, le=64)
    chatbot_replicas: int = Field(default=1, ge=1, le=64)
    settings: dict[str, Any] = Field(default_factory=dict, description="Settings overrides")


def build_app(args: dict[str, Any] | AppArgs) -> Application:
    """The builder `serve run` and `serve deploy` call; unknown arguments are refused."""
    if not isinstance(args, AppArgs):
        args = AppArgs.model_validate(args)
    try:
        settings = load_settings(**args.settings)
    except ConfigError as exc:
        sys.exit(f"operator-comms: {exc}")
    return compose(args, settings)


def compose(args: AppArgs, settings: Settings) -> Application:
    """The application for these arguments and already-loaded settings."""
    placement = {"resources": settings.actor_resources} if settings.actor_resources else {}
    chatbot = ChatBot.options(
        num_replicas=args.chatbot_replicas,
        ray_actor_options={**options.CHATBOT["ray_actor_options"], **placement},
    ).bind(settings)
    return Dashboard.options(
        num_replicas=args.dashboard_replicas,
        ray_actor_options={**options.DASHBOARD["ray_actor_options"], **placement},
    ).bind(settings, chatbot)


app = build_app
