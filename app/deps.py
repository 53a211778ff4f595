"""FastAPI dependencies: the objects opened at start-up, reaching handlers by type."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session

from app.index.scored import ScoredIndex
from app.service import Service
from app.song_map import SongMapCache
from training.artefacts import Bundle


async def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


def get_session(service: ServiceDep) -> Iterator[Session]:
    with service.sessions() as session:
        yield session


async def get_index(service: ServiceDep) -> ScoredIndex:
    return service.index


async def get_bundle(service: ServiceDep) -> Bundle:
    return service.bundle


SessionDep = Annotated[Session, Depends(get_session)]
IndexDep = Annotated[ScoredIndex, Depends(get_index)]
BundleDep = Annotated[Bundle, Depends(get_bundle)]


WRITE = "this request changes the catalogue"
READ = "this server needs the key for reads too (MUSICSIM_API_KEY_FOR_READS)"


def check_api_key(expected: str | None, given: str | None, *, why: str = WRITE) -> None:
    """Writes (and reads, when so configured) need the key: 401 without it, 403 when wrong."""
    if expected is None:
        return
    if given is None:
        raise HTTPException(401, f"{why}: send the X-API-Key header")
    # Constant-time comparison: response timing must not reveal how much of a guess was right.
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise HTTPException(403, "the X-API-Key is not valid")


async def require_api_key(
    service: ServiceDep, x_api_key: Annotated[str | None, Header()] = None
) -> None:
    check_api_key(service.settings.api_key, x_api_key)


async def require_api_key_for_reads(
    service: ServiceDep, x_api_key: Annotated[str | None, Header()] = None
) -> None:
    check_api_key(service.settings.api_key, x_api_key, why=READ)


ApiKeyHeader = Annotated[str | None, Header(alias="X-API-Key")]


async def get_song_map_cache(request: Request) -> SongMapCache:
    return request.app.state.song_map


SongMapCacheDep = Annotated[SongMapCache, Depends(get_song_map_cache)]
