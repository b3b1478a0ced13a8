"""The dashboard page at ``/`` and its assets under ``/static`` (served from app/static).

Plain HTML, CSS and JavaScript: no build step, no CDN. The page calls the API
with the key saved in the browser's localStorage (``Authorization: Bearer``) and
follows the selected run through ``GET /v1/runs/{id}/events?access_token=``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
def dashboard() -> FileResponse:
    """The dashboard page."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The dashboard's icon (an SVG) for clients that ask for /favicon.ico."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


def static_files() -> StaticFiles:
    """The dashboard's assets (mounted at ``/static``)."""
    return StaticFiles(directory=STATIC_DIR)
