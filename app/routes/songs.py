"""Songs: metadata, neighbours of a stored or posted song, and cold-start additions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.cards import SongCard, audio_url, similar_song, song_out
from app.catalogue import CatalogueError
from app.catalogue.reads import read_songs, search_songs, top_level_genres
from app.catalogue.writes import NewSong
from app.deps import BundleDep, IndexDep, ServiceDep, SessionDep, require_api_key
from app.index.protocol import Neighbour, SongFilter
from app.orm import Song
from app.playlists import write_m3u
from app.routes import JSONBodyRoute
from app.schemas import (
    MAX_ID,
    BatchOut,
    BatchQuery,
    CreatedOut,
    FeaturesQuery,
    ScoringName,
    SimilarOut,
    SimilarSong,
    SongIn,
    SongOut,
    SongPage,
    parse_near,
)
from app.service import Service
from app.similarity import add_and_index, search_distinct

__all__ = ["audio_url", "similar_song", "song_out"]  # re-exported: other routes import them
T = TypeVar("T")

router = APIRouter(prefix="/songs", tags=["songs"], route_class=JSONBodyRoute)
MAX_PAGE = 100  # songs per page of GET /songs
SongId = Annotated[int, Path(ge=0, le=MAX_ID, description="Song (FMA track) id")]
ListFormat = Annotated[
    Literal["json", "m3u"],
    Query(description="json, or m3u: an extended M3U playlist of the results (audio/x-mpegurl)"),
]
M3U_RESPONSES: dict[int | str, dict] = {
    200: {"content": {"audio/x-mpegurl": {}}, "description": "JSON, or M3U with format=m3u"}
}


def similar_songs(session: Session, neighbours: list[Neighbour]) -> list[SimilarSong]:
    """Result items read through the ORM (uploads; the lean answers use `SongCards`)."""
    songs = read_songs(session, [n.song_id for n in neighbours])
    return [
        similar_song(songs[n.song_id], distance=n.distance, similarity=n.similarity)
        for n in neighbours
        if n.song_id in songs  # deleted since it was found
    ]


def json_body(content: bytes) -> Response:
    """An answer serialised once, by `SongCards`: no model is built and validated again."""
    return Response(content, media_type="application/json")


async def searched(service: Service, search: Callable[[], T]) -> T:
    """Run a search in the event loop when it is short (`Service.quick_search`), else in
    the thread pool: exact scans take milliseconds and coalesce across threads."""
    if service.quick_search:
        return search()
    return await run_in_threadpool(search)


def m3u_of(request: Request, found: list[tuple[SongCard, Neighbour]]) -> Response:
    entries = [(c.id, c.duration, c.artist_name, c.title or f"song {c.id}") for c, _ in found]
    text = write_m3u(entries, base_url=str(request.base_url))
    return Response(text, media_type="audio/x-mpegurl")


def check_k(k: int, service: ServiceDep) -> None:
    if k > service.settings.max_k:
        raise HTTPException(422, f"k must be between 1 and {service.settings.max_k}, got {k}")


def check_genre(session: Session, genre: str | None) -> None:
    if genre is not None:
        known = top_level_genres(session)
        if genre not in known:
            raise HTTPException(422, f"unknown genre {shorten(genre)}; known: {sorted(known)}")


def check_genre_known(service: Service, genre: str | None) -> None:
    """check_genre against the genres in memory; the database only for one not among them."""
    if genre is not None and genre not in service.cards.genres:
        with service.sessions() as session:
            check_genre(session, genre)


def shorten(text: str, *, most: int = 80) -> str:
    """repr of a caller's text, cut short: an error must not echo megabytes back."""
    return repr(text) if len(text) <= most else f"{text[:most]!r}... ({len(text)} characters)"


def get_song(session: Session, song_id: int) -> Song:
    song = read_songs(session, [song_id]).get(song_id)
    if song is None:
        raise HTTPException(404, f"song {song_id} not found")
    return song


@router.get("", response_model=SongPage)
def list_songs(
    session: SessionDep,
    q: Annotated[
        str | None, Query(max_length=200, description="Part of a title or artist name, any case")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Songs per page")] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_ID, description="Songs to skip")] = 0,
) -> SongPage:
    """Songs whose title or artist name contains q (all songs without q), by id, one page."""
    if q is not None and "\x00" in q:  # PostgreSQL cannot hold NUL in text: no title has one
        raise HTTPException(422, "q must not contain NUL characters")
    total, songs = search_songs(
        session, contains=(q or "").strip() or None, limit=limit, offset=offset
    )
    return SongPage(total=total, limit=limit, offset=offset, items=[song_out(s) for s in songs])


# ":int" keeps /songs/similar and /songs/audio from matching these routes.
@router.get("/{song_id:int}", response_model=SongOut)
def read_song(song_id: SongId, session: SessionDep) -> SongOut:
    """A song's metadata."""
    return song_out(get_song(session, song_id))


@router.get("/{song_id:int}/similar", response_model=SimilarOut, responses=M3U_RESPONSES)
async def read_similar_songs(
    song_id: SongId,
    request: Request,
    service: ServiceDep,
    k: Annotated[int, Query(ge=1, description="How many neighbours")] = 10,
    exclude_same_artist: Annotated[bool, Query(description="Only other artists")] = False,
    genre: Annotated[str | None, Query(description="Only this top-level genre")] = None,
    near: Annotated[str | None, Query(description="'LAT,LON': only artists near here")] = None,
    radius_km: Annotated[float | None, Query(description="Radius around near, km")] = None,
    format: ListFormat = "json",
    scoring: Annotated[
        ScoringName | None, Query(description="How candidates are ranked; default MUSICSIM_SCORING")
    ] = None,
) -> Response:
    """The k most similar other songs to a stored song, best first by the scoring."""
    check_k(k, service)
    card = service.cards.get(song_id)
    if card is None:  # not stored (404), or stored by another process moments ago
        with service.sessions() as session:
            get_song(session, song_id)
            if song_id in service.index:  # e.g. indexed in a shared collection: card it now
                service.cards.refresh(session, [song_id])
                card = service.cards.get(song_id)
    check_genre_known(service, genre)
    try:
        place = parse_near(near, radius_km)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    index = service.index
    if card is None or song_id not in index:
        raise HTTPException(409, f"song {song_id} is stored but not indexed yet; retry")
    where = SongFilter(
        exclude_artist=card.artist_id if exclude_same_artist else None, genre=genre, near=place
    )
    neighbours = await searched(
        service,
        lambda: search_distinct(
            index, index.embedding_of(song_id), keys_of=service.cards.recording_keys, k=k,
            where=where, exclude_song=song_id, scoring=scoring,
        )[0],
    )  # fmt: skip
    if format == "m3u":
        return m3u_of(request, service.cards.found(neighbours))
    return json_body(service.cards.similar_json(neighbours, query=card))


def search_posted(service: Service, vectors: list[list[float]], query) -> list[list[Neighbour]]:
    embeddings = service.bundle.embed(np.asarray(vectors, dtype=np.float32))
    unusable = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if len(unusable):  # huge features overflow when z-scored
        raise HTTPException(
            422, f"features of item(s) {unusable.tolist()} cannot be embedded (not finite)"
        )
    return search_distinct(
        service.index, embeddings, keys_of=service.cards.recording_keys, k=query.k,
        where=query.to_filter(), scoring=query.scoring,
    )  # fmt: skip


@router.post("/similar", response_model=SimilarOut, responses=M3U_RESPONSES)
async def read_similar_to_features(
    query: FeaturesQuery, request: Request, service: ServiceDep, format: ListFormat = "json"
) -> Response:
    """Neighbours of a cold-start song given by its 518 features (not stored)."""
    check_k(query.k, service)
    check_genre_known(service, query.genre)
    found = await searched(service, lambda: search_posted(service, [query.features], query))
    if format == "m3u":
        return m3u_of(request, service.cards.found(found[0]))
    return json_body(service.cards.similar_json(found[0], query=None))


@router.post("/similar/batch", response_model=BatchOut)
def read_similar_to_many(query: BatchQuery, service: ServiceDep) -> Response:
    """Neighbours of many feature vectors in one call, in the order posted."""
    check_k(query.k, service)
    if len(query.items) > service.settings.max_batch:
        raise HTTPException(
            413, f"at most {service.settings.max_batch} items per batch, got {len(query.items)}"
        )
    work, most = len(query.items) * query.k, service.settings.max_batch_work
    if work > most:
        raise HTTPException(
            413, f"{len(query.items)} items x k={query.k} is {work} results, more than {most}"
        )
    check_genre_known(service, query.genre)
    found = search_posted(service, [item.features for item in query.items], query)
    cards = service.cards
    answers = b",".join(cards.similar_json(neighbours, query=None) for neighbours in found)
    return json_body(b'{"results":[' + answers + b"]}")


@router.post(
    "",
    response_model=CreatedOut,
    status_code=201,
    dependencies=[Depends(require_api_key)],
)
def add_cold_start_song(
    body: SongIn, session: SessionDep, index: IndexDep, bundle: BundleDep, service: ServiceDep
) -> CreatedOut:
    """Store a new song and index it at once; it survives restarts."""
    new = NewSong(
        title=body.title,
        artist=body.artist,
        features=np.asarray(body.features, dtype=np.float32),
        genre=body.genre,
        duration=body.duration,
        location=body.location,
        latitude=body.latitude,
        longitude=body.longitude,
    )
    try:
        song_id = add_and_index(session, index, bundle.embed, new, cards=service.cards)
    except CatalogueError as exc:
        raise HTTPException(422, str(exc)) from exc
    return CreatedOut(id=song_id)
