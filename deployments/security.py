"""Security headers on every reply of both applications: a strict Content-Security-Policy
(every script, style, image and socket comes from the app itself; no inline script or
style anywhere), no MIME sniffing, no referrer (unsubscribe links carry a signature),
no framing. A plain ASGI middleware: it adds headers to `http.response.start` and costs
a chat turn nothing measurable.

The API docs page (`/api/docs`) is FastAPI's Swagger UI, which loads from a CDN with an
inline script: it gets the other headers, not the policy.
"""

from __future__ import annotations

from typing import Any

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
POLICY = (b"content-security-policy", CONTENT_SECURITY_POLICY.encode())
EXEMPT_SUFFIXES = ("/api/docs", "/api/docs/oauth2-redirect")


class SecurityHeaders:
    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = HEADERS if scope["path"].endswith(EXEMPT_SUFFIXES) else [*HEADERS, POLICY]

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
