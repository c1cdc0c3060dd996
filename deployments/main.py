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
from deployments.chatbot import ChatBot
from deployments.dashboard import Dashboard


class AppArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dashboard_replicas: int = Field(default=1, ge=1, le=64)
    chatbot_replicas: int = Field(default=1, ge=1, le=64)
    settings: dict[str, Any] = Field(default_factory=dict, description="Settings overrides")


def build_app(args: dict[str, Any] | AppArgs | None = None, settings: Settings | None = None
              ) -> Application:
    parsed = args if isinstance(args, AppArgs) else AppArgs.model_validate(args or {})
    if settings is None:
        try:
            settings = load_settings(**parsed.settings)
        except ConfigError as exc:
            sys.exit(f"operator-comms: {exc}")
    chatbot = ChatBot.options(num_replicas=parsed.chatbot_replicas).bind(settings)
    return Dashboard.options(num_replicas=parsed.dashboard_replicas).bind(settings, chatbot)


app = build_app
