"""The web page at `/` and its files (`backend/web`, no build step); not in the API schema."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response

WEB_DIR = Path(__file__).resolve().parent.parent / "backend" / "web"
WEB_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def http_page() -> FileResponse:
    return FileResponse(WEB_DIR / "index.html", media_type="text/html")


@router.get("/web/{name}")
async def http_web_file(name: str) -> Response:
    if name not in WEB_FILES:  # a fixed list: no path from the request reaches the disk
        body = {"error": {"code": "not_found", "message": f"no file {name!r}"}}
        return JSONResponse(body, status_code=404)
    return FileResponse(WEB_DIR / name, media_type=WEB_FILES[name])
