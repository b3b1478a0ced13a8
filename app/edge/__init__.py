"""The HTTP edge: pure-ASGI middleware every request passes before a router."""
