"""Security headers on every response: no MIME sniffing, no framing, a tight CSP per page.

- ``X-Content-Type-Options: nosniff`` on every response, so a browser never runs a
  JSON answer, a plot or an export as a script or a page.
- ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'`` on every response: the
  dashboard holds the API key and has Cancel/Pause buttons, so no other site may
  frame it (click-jacking); nothing else of ours is meant to be framed either.
- A ``Content-Security-Policy`` per kind of response: the dashboard (:data:`DASHBOARD_POLICY`)
  and the docs pages (:data:`DOCS_POLICY`) may load only from this server; everything
  else (JSON, images, files) gets :data:`API_POLICY`, which allows nothing at all.

The docs pages are Swagger UI and ReDoc from the ``fastapi-offline`` package's files.
ReDoc's bundle still refers to a logo on its CDN; the policy stops the browser from
fetching it (or anything else off this server), so the docs work the same with and
without internet access and leak no request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_PATHS = frozenset({"/docs", "/redoc", "/docs/oauth2-redirect"})
DASHBOARD_PATHS = frozenset({"/"})
DASHBOARD_PREFIX = "/static/"

DOCS_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",  # the pages' inline bootstrap scripts
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "worker-src 'self' blob:",  # ReDoc's search worker
        "connect-src 'self'",
        "font-src 'self' data:",
        "base-uri 'self'",
        "frame-ancestors 'none'",
    ]
)
DASHBOARD_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",  # app/static/dashboard.js; no inline script, no eval
        "style-src 'self'",  # app/static/dashboard.css; no inline style
        "img-src 'self'",
        "connect-src 'self'",  # the API and its event stream
        "base-uri 'none'",
        "form-action 'none'",  # the key form is handled by the script, never submitted
        "frame-ancestors 'none'",
    ]
)
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
"""JSON, images and files are never documents that load anything."""

ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
)


def policy_for(path: str) -> str:
    """The Content-Security-Policy of the response to ``path``."""
    if path in DOCS_PATHS:
        return DOCS_POLICY
    if path in DASHBOARD_PATHS or path.startswith(DASHBOARD_PREFIX):
        return DASHBOARD_POLICY
    return API_POLICY


def with_security_headers(
    headers: list[tuple[bytes, bytes]], path: str
) -> list[tuple[bytes, bytes]]:
    """``headers`` plus the security headers (those the response set itself are kept)."""
    present = {name.lower() for name, _ in headers}
    added = [(name, value) for name, value in ALWAYS if name not in present]
    if b"content-security-policy" not in present:
        added.append((b"content-security-policy", policy_for(path).encode()))
    return [*headers, *added]


class SecurityHeaders:
    """ASGI middleware adding the security headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = with_security_headers(list(message.get("headers", [])), path)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
