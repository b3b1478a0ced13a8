"""A Content-Security-Policy for the docs pages: they may load nothing but this server.

Swagger UI and ReDoc are served from the ``fastapi-offline`` package's files.
ReDoc's bundle still refers to a logo on its CDN; the policy stops the browser
from fetching it (or anything else off this server), so the docs page works
the same with and without internet access and leaks no request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
DOCS_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",  # the pages' inline bootstrap scripts
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "worker-src 'self' blob:",  # ReDoc's search worker
        "connect-src 'self'",
        "font-src 'self' data:",
        "frame-ancestors 'self'",
    ]
)


class DocsContentSecurityPolicy:
    """ASGI middleware adding :data:`DOCS_POLICY` to the docs pages' responses."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in DOCS_PATHS:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"content-security-policy", DOCS_POLICY.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_policy)
