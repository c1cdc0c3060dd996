"""Pages and static assets, all served by the application (no CDN, works offline).

The assets live beside the deployments that serve them (`deployments/static`) and are
served by Starlette's `StaticFiles` under `/static` (ETag and Last-Modified, so a
browser revalidates instead of fetching again)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(tags=["pages"])
STATIC = Path(__file__).resolve().parent.parent / "static"


def mount_static(api: FastAPI) -> None:
    api.mount("/static", StaticFiles(directory=STATIC), name="static")


@router.get("/", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html")


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")
