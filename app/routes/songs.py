"""Songs: metadata, neighbours of a stored or posted song, and cold-start additions."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from sqlalchemy.orm import Session

from app.catalogue import CatalogueError
from app.catalogue.reads import read_songs, search_songs, top_level_genres
from app.catalogue.writes import NewSong
from app.deps import BundleDep, IndexDep, ServiceDep, SessionDep, require_api_key
from app.index.protocol import Neighbour, SongFilter
from app.index.scored import ScoredIndex
from app.orm import Song
from app.schemas import (
    MAX_ID,
    ArtistRef,
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
from app.similarity import add_and_index

router = APIRouter(prefix="/songs", tags=["songs"])
MAX_PAGE = 100  # songs per page of GET /songs
SongId = Annotated[int, Path(ge=0, le=MAX_ID, description="Song (FMA track) id")]


def song_out(song: Song) -> SongOut:
    artist = song.artist
    return SongOut(
        id=song.id,
        title=song.title,
        artist=ArtistRef(id=artist.id, name=artist.name),
        genre=song.genre.title if song.genre else None,
        duration=song.duration,
        album=song.album,
        location=artist.location,
        latitude=artist.latitude,
        longitude=artist.longitude,
        source=song.source,  # type: ignore[arg-type]
    )


def similar_songs(session: Session, neighbours: list[Neighbour]) -> list[SimilarSong]:
    songs = read_songs(session, [n.song_id for n in neighbours])
    return [
        SimilarSong(
            id=n.song_id,
            title=songs[n.song_id].title,
            artist=ArtistRef(id=songs[n.song_id].artist.id, name=songs[n.song_id].artist.name),
            genre=songs[n.song_id].genre.title if songs[n.song_id].genre else None,
            distance=n.distance,
            similarity=n.similarity,
        )
        for n in neighbours
        if n.song_id in songs
    ]


def check_k(k: int, service: ServiceDep) -> None:
    if k > service.settings.max_k:
        raise HTTPException(422, f"k must be between 1 and {service.settings.max_k}, got {k}")


def check_genre(session: Session, genre: str | None) -> None:
    if genre is not None:
        known = top_level_genres(session)
        if genre not in known:
            raise HTTPException(422, f"unknown genre {genre!r}; known: {sorted(known)}")


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


@router.get("/{song_id:int}/similar", response_model=SimilarOut)
def read_similar_songs(
    song_id: SongId,
    session: SessionDep,
    index: IndexDep,
    service: ServiceDep,
    k: Annotated[int, Query(ge=1, description="How many neighbours")] = 10,
    exclude_same_artist: Annotated[bool, Query(description="Only other artists")] = False,
    genre: Annotated[str | None, Query(description="Only this top-level genre")] = None,
    near: Annotated[str | None, Query(description="'LAT,LON': only artists near here")] = None,
    radius_km: Annotated[float | None, Query(description="Radius around near, km")] = None,
    scoring: Annotated[
        ScoringName | None, Query(description="How candidates are ranked; default MUSICSIM_SCORING")
    ] = None,
) -> SimilarOut:
    """The k nearest other songs to a stored song, nearest first."""
    check_k(k, service)
    song = get_song(session, song_id)
    check_genre(session, genre)
    try:
        place = parse_near(near, radius_km)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    if song_id not in index:
        raise HTTPException(409, f"song {song_id} is stored but not indexed yet; retry")
    where = SongFilter(
        exclude_artist=song.artist_id if exclude_same_artist else None, genre=genre, near=place
    )
    neighbours = index.search(
        index.embedding_of(song_id), k=k, where=where, exclude_song=song_id, scoring=scoring
    )
    return SimilarOut(query=song_out(song), results=similar_songs(session, neighbours[0]))


def search_posted(
    session: Session, index: ScoredIndex, bundle, vectors: list[list[float]], query
) -> list[SimilarOut]:
    check_genre(session, query.genre)
    embeddings = bundle.embed(np.asarray(vectors, dtype=np.float32))
    unusable = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if len(unusable):  # huge features overflow when z-scored
        raise HTTPException(
            422, f"features of item(s) {unusable.tolist()} cannot be embedded (not finite)"
        )
    found = index.search(embeddings, k=query.k, where=query.to_filter(), scoring=query.scoring)
    return [SimilarOut(query=None, results=similar_songs(session, n)) for n in found]


@router.post("/similar", response_model=SimilarOut)
def read_similar_to_features(
    query: FeaturesQuery,
    session: SessionDep,
    index: IndexDep,
    bundle: BundleDep,
    service: ServiceDep,
) -> SimilarOut:
    """Neighbours of a cold-start song given by its 518 features (not stored)."""
    check_k(query.k, service)
    return search_posted(session, index, bundle, [query.features], query)[0]


@router.post("/similar/batch", response_model=BatchOut)
def read_similar_to_many(
    query: BatchQuery, session: SessionDep, index: IndexDep, bundle: BundleDep, service: ServiceDep
) -> BatchOut:
    """Neighbours of many feature vectors in one call, in the order posted."""
    check_k(query.k, service)
    if len(query.items) > service.settings.max_batch:
        raise HTTPException(
            413, f"at most {service.settings.max_batch} items per batch, got {len(query.items)}"
        )
    vectors = [item.features for item in query.items]
    return BatchOut(results=search_posted(session, index, bundle, vectors, query))


@router.post(
    "",
    response_model=CreatedOut,
    status_code=201,
    dependencies=[Depends(require_api_key)],
)
def add_cold_start_song(
    body: SongIn, session: SessionDep, index: IndexDep, bundle: BundleDep
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
        song_id = add_and_index(session, index, bundle.embed, new)
    except CatalogueError as exc:
        raise HTTPException(422, str(exc)) from exc
    return CreatedOut(id=song_id)
