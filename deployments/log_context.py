"""The log fields of a request: its Serve request id (`x-request-id`, set by the proxy)
and the campaign or chat session its path names, bound for the lines written while it
is handled (`app.observability.logs`). A plain ASGI middleware; with text logs it passes through."""

from __future__ import annotations

import re
from typing import Any

from app.observability import logs

PATH_FIELDS = [
    (re.compile(r"/api/campaigns/([0-9a-f]{16})(?:/|$)"), "campaign_id"),
    (re.compile(r"/(?:api/sessions|ws)/([0-9a-f]{32})(?:/|$)"), "session_id"),
]


class LogContext:
    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if logs.structured() and scope["type"] in ("http", "websocket"):
            fields = {name: match.group(1) for pattern, name in PATH_FIELDS
                      if (match := pattern.search(scope["path"]))}
            for key, value in scope["headers"]:
                if key == b"x-request-id":
                    fields["request_id"] = value.decode("latin-1")
            with logs.bound(**fields):
                await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)
