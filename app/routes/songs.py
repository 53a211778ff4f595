"""Songs: metadata, neighbours of a stored or posted song, and cold-start additions."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from sqlalchemy.orm import Session

from app.catalogue import CatalogueError
from app.catalogue.reads import read_songs, search_songs, top_level_genres
from app.catalogue.writes import NewSong
from app.deps import BundleDep, IndexDep, ServiceDep, SessionDep, require_api_key
from app.index.protocol import Neighbour, SongFilter
from app.index.scored import ScoredIndex
from app.orm import Song
from app.playlists import write_m3u
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
from app.similarity import add_and_index, search_distinct

router = APIRouter(prefix="/songs", tags=["songs"])
MAX_PAGE = 100  # songs per page of GET /songs
SongId = Annotated[int, Path(ge=0, le=MAX_ID, description="Song (FMA track) id")]
ListFormat = Annotated[
    Literal["json", "m3u"],
    Query(description="json, or m3u: an extended M3U playlist of the results (audio/x-mpegurl)"),
]
M3U_RESPONSES: dict[int | str, dict] = {
    200: {"content": {"audio/x-mpegurl": {}}, "description": "JSON, or M3U with format=m3u"}
}


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
        source=song.source,
        file=song.file_path,
        audio_url=audio_url(song),
        album_artist=song.album_artist,
        track_number=song.track_number,
    )


def audio_url(song: Song) -> str | None:
    return f"/songs/{song.id}/audio" if song.file_path else None


def similar_songs(session: Session, neighbours: list[Neighbour]) -> list[SimilarSong]:
    songs = read_songs(session, [n.song_id for n in neighbours])
    return [
        similar_song(songs[n.song_id], distance=n.distance, similarity=n.similarity)
        for n in neighbours
        if n.song_id in songs  # deleted since it was found
    ]


def similar_song(song: Song, *, distance: float, similarity: float | None = None) -> SimilarSong:
    """One result item: the one place every list answer builds its items."""
    genre = song.genre
    return SimilarSong(
        id=song.id,
        title=song.title,
        artist=ArtistRef(id=song.artist.id, name=song.artist.name),
        genre=genre.title if genre is not None else None,
        distance=distance,
        similarity=similarity,
        album=song.album,
        duration=song.duration,
        audio_url=audio_url(song),
        album_artist=song.album_artist,
        track_number=song.track_number,
    )


def as_m3u(request: Request, results: list[SimilarSong]) -> Response:
    """The results as an extended M3U whose locations are this server's audio URLs."""
    entries = [(r.id, r.duration, r.artist.name, r.title or f"song {r.id}") for r in results]
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
def read_similar_songs(
    song_id: SongId,
    request: Request,
    session: SessionDep,
    index: IndexDep,
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
) -> SimilarOut | Response:
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
    neighbours = search_distinct(
        session, index, index.embedding_of(song_id), k=k, where=where, exclude_song=song_id,
        scoring=scoring,
    )  # fmt: skip
    results = similar_songs(session, neighbours[0])
    if format == "m3u":
        return as_m3u(request, results)
    return SimilarOut(query=song_out(song), results=results)


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
    found = search_distinct(
        session, index, embeddings, k=query.k, where=query.to_filter(), scoring=query.scoring
    )
    return [SimilarOut(query=None, results=similar_songs(session, n)) for n in found]


@router.post("/similar", response_model=SimilarOut, responses=M3U_RESPONSES)
def read_similar_to_features(
    query: FeaturesQuery,
    request: Request,
    session: SessionDep,
    index: IndexDep,
    bundle: BundleDep,
    service: ServiceDep,
    format: ListFormat = "json",
) -> SimilarOut | Response:
    """Neighbours of a cold-start song given by its 518 features (not stored)."""
    check_k(query.k, service)
    found = search_posted(session, index, bundle, [query.features], query)[0]
    return as_m3u(request, found.results) if format == "m3u" else found


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
    work, most = len(query.items) * query.k, service.settings.max_batch_work
    if work > most:
        raise HTTPException(
            413, f"{len(query.items)} items x k={query.k} is {work} results, more than {most}"
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
