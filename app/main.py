"""The FastAPI application factory.

>>> app = create_app(Settings(database_url="sqlite:///data/musicsim.db"))
>>> uvicorn.run(app)            # or: musicsim serve
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.routing import Match

from app.admission import Admission
from app.audio_workers import AudioWorkers
from app.config import Settings
from app.deps import require_api_key_for_reads
from app.index.faiss_index import search_alone_on_this_thread
from app.index.scored import NeighbourhoodsNotReady
from app.limits import MIN_POSTED_SONG_BYTES, BodySizeLimit
from app.routes import (
    audio,
    evaluate,
    explorer,
    genres,
    health,
    library,
    metrics,
    playlists,
    song_map,
    songs,
)
from app.routes.docs import docs_router, swagger_assets
from app.schemas import ErrorOut
from app.service import open_service
from app.song_map import SongMapCache
from app.telemetry.middleware import ObserveRequests
from app.telemetry.prometheus import RequestMetrics

log = logging.getLogger("musicsim")

# Every error body is {"detail": a sentence, or a list of field errors}.
ERROR_RESPONSES: dict[int | str, dict] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in [
        (400, "The body cannot be parsed"),
        (401, "X-API-Key is required and missing"),
        (403, "X-API-Key is wrong"),
        (404, "No such song"),
        (409, "The song is stored but not indexed yet; retry"),
        (413, "The body is larger than the configured limit"),
        (422, "The request is invalid; detail says why"),
        (
            503,
            "Busy, or the scoring asked for is still being prepared (see Retry-After), "
            "or the work passed its time limit",
        ),
    ]
}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    if settings.api_key_for_reads and settings.api_key is None:
        raise ValueError("MUSICSIM_API_KEY_FOR_READS needs MUSICSIM_API_KEY to be set")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = open_service(settings)
        search_alone_on_this_thread()  # the event loop's searches; after start-up's builds
        app.state.service = service
        app.state.audio_workers = AudioWorkers(
            processes=settings.audio_workers,
            queue=settings.audio_queue,
            timeout_s=settings.audio_timeout_seconds,
            memory_mb=settings.audio_worker_memory_mb,
            warm_up=bool(settings.audio_warm_up),
        )
        try:
            yield
        finally:
            app.state.audio_workers.close()
            service.close()

    assets = swagger_assets()  # local Swagger UI: /docs works offline
    app = FastAPI(
        docs_url=None if assets else "/docs",
        redoc_url=None,  # ReDoc loads from a CDN only
        title="musicsim",
        summary="Content-based music similarity: nearest songs from audio features alone.",
        version="0.1.0",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    if assets:
        app.include_router(docs_router(title="musicsim", assets=assets))
    app.include_router(health.router)  # always open: container health checks call it
    guarded = [Depends(require_api_key_for_reads)] if settings.api_key_for_reads else []
    for module in (songs, library, audio, evaluate, playlists):
        app.include_router(module.router, dependencies=guarded)
    # /metrics obeys the read rule: with MUSICSIM_API_KEY_FOR_READS the scraper sends the key.
    for module in (genres, song_map, metrics):
        app.include_router(module.router, dependencies=guarded)
    app.include_router(explorer.router)  # the page holds no data; it asks for the key
    app.state.song_map = SongMapCache(max_points=settings.map_points)
    if settings.cors_origins:  # browsers on other origins get nothing unless configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(405, method_not_allowed)
    app.add_exception_handler(NeighbourhoodsNotReady, neighbourhoods_not_ready)
    app.add_middleware(
        BodySizeLimit,
        max_json_bytes=settings.max_json_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        body_timeout_s=settings.body_timeout_seconds,
    )
    # Outside the body limit: an expensive request past the bound is refused unread.
    app.add_middleware(
        Admission,
        max_expensive=settings.max_expensive_requests,
        rate_per_minute=settings.rate_limit_per_minute,
    )
    if settings.max_evaluate_songs * MIN_POSTED_SONG_BYTES > settings.max_json_bytes:
        log.warning(
            "MUSICSIM_MAX_EVALUATE_SONGS=%d cannot be reached: %d songs need at least %d "
            "bytes of JSON, more than MUSICSIM_MAX_JSON_BYTES=%d",
            settings.max_evaluate_songs,
            settings.max_evaluate_songs,
            settings.max_evaluate_songs * MIN_POSTED_SONG_BYTES,
            settings.max_json_bytes,
        )
    # Added last, so outermost: ids, access lines and counts cover every answer, 413s too.
    app.state.metrics = RequestMetrics(service=lambda: getattr(app.state, "service", None))
    app.add_middleware(ObserveRequests, metrics=app.state.metrics)
    return app


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, without echoing the input: a NaN in it cannot be written as JSON."""
    assert isinstance(exc, RequestValidationError)
    detail = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in exc.errors()
    ]
    return JSONResponse(status_code=422, content={"detail": detail})


async def neighbourhoods_not_ready(request: Request, exc: Exception) -> JSONResponse:
    """A 503 for any route searching with a scoring whose neighbourhoods are being computed
    (in the background: no request computes them), with the time they should take."""
    assert isinstance(exc, NeighbourhoodsNotReady)
    retry = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse({"detail": str(exc)}, status_code=503, headers=retry)


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """A 405 whose Allow header lists every method of the path, not only one route's.

    GET /songs and POST /songs are two routes; the router answers 405 from the first.
    """
    allowed = [
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    ]
    allow = ", ".join(allowed)
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": allow})
