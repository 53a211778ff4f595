"""/docs: Swagger UI served from this process, so it works without internet access.

FastAPI's own /docs page loads Swagger UI from a CDN, which leaves it blank on a
machine that cannot reach one. The assets come from the `swagger-ui-py` package
(Swagger UI 5, which renders OpenAPI 3.1); without it, FastAPI's CDN page is used.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}


def swagger_assets() -> Path | None:
    """The folder holding Swagger UI's bundle, or None when the package is absent."""
    try:
        import swagger_ui
    except ImportError:
        return None
    folder = Path(swagger_ui.__file__).resolve().parent / "static"
    return folder if all((folder / name).is_file() for name in ASSETS) else None


def docs_router(*, title: str, assets: Path) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    def read_docs() -> HTMLResponse:
        """Swagger UI over /openapi.json, with its script and style from this server."""
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title} - API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="data:,",  # no request for a favicon elsewhere
        )

    @router.get("/docs/assets/{name}")
    def read_docs_asset(name: str) -> FileResponse:
        if name not in ASSETS:
            raise HTTPException(404, f"no docs asset {name!r}")
        return FileResponse(assets / name, media_type=ASSETS[name])

    return router
