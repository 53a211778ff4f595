"""The web explorer: one static page (app/static/) that calls the JSON API.

The page and its files hold no data, so they are served without the API key even
when reads need it; the page asks for the key and sends it with each API call.
Its files are named here rather than served from a folder: nothing else in it can
be fetched, and the metrics see one route template.
"""

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
ASSETS = {
    "explorer.js": "text/javascript",
    "explorer.css": "text/css",
    "playlists.js": "text/javascript",
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def read_explorer() -> FileResponse:
    """The explorer's page."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/static/{name}")
def read_explorer_asset(name: str) -> FileResponse:
    """The page's script and style sheet."""
    if name not in ASSETS:
        raise HTTPException(404, f"no static file {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=ASSETS[name])
