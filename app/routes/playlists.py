"""Playlists: a mix from several songs (POST /recommend), a path between two songs
(GET /songs/{a}/path/{b}), a radio that keeps going (POST /radio); each as JSON or,
with format=m3u, as an extended M3U a player opens.

The logic lives in app.playlists; these handlers check input, resolve ids to
embeddings and write every result list from the songs' cards in memory (app/cards.py).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Request, Response
from sqlalchemy.orm import Session

from app.catalogue.reads import read_track_rows
from app.deps import BundleDep, IndexDep, ServiceDep, SessionDep
from app.index.protocol import SongFilter, SongIndex
from app.index.scored import ScoredIndex
from app.playlist_schemas import PlaylistOut, PlaylistRules, RadioIn, RecommendIn
from app.playlists import Describe, Ledger, Rules, TooFew, Track, recommend, song_path, title_key
from app.playlists import radio as radio_after
from app.routes import JSONBodyRoute
from app.routes.songs import (
    M3U_RESPONSES,
    ListFormat,
    SongId,
    check_genre,
    check_k,
    get_song,
    json_body,
    m3u_of,
)
from app.schemas import BatchItem, parse_near
from app.service import Service
from training.artefacts import Bundle

router = APIRouter(tags=["playlists"], route_class=JSONBodyRoute)


def describer(session: Session) -> Describe:
    """Song ids -> Tracks, from the catalogue (ids it no longer has are absent)."""

    def describe(ids: list[int]) -> dict[int, Track]:
        return {
            song_id: Track(
                song_id=song_id,
                artist_id=artist_id,
                album=album,
                duration=duration,
                title=title,
                artist_name=artist_name,
            )
            for song_id, artist_id, album, duration, title, artist_name in read_track_rows(
                session, ids
            )
        }

    return describe


def stored(session: Session, index: SongIndex, ids: list[int], role: str) -> dict[int, Track]:
    """Tracks of songs a request names; 422 for ids not stored, 409 for ones not indexed."""
    tracks = describer(session)(ids)
    missing = [i for i in ids if i not in tracks]
    if missing:
        raise HTTPException(422, f"{role}: no song with id {', '.join(map(str, missing))}")
    pending = [i for i in ids if i not in index]
    if pending:
        raise HTTPException(409, f"{role}: song {pending[0]} is stored but not indexed yet; retry")
    return tracks


def embed_examples(
    examples: list, *, session: Session, index: SongIndex, bundle: Bundle, role: str
) -> tuple[np.ndarray, list[Track]]:
    """(n, d) embeddings of stored ids and posted feature vectors, and the stored ones' Tracks."""
    ids = [e for e in examples if not isinstance(e, BatchItem)]
    tracks = stored(session, index, ids, role)
    posted = [e.features for e in examples if isinstance(e, BatchItem)]
    embedded = iter(bundle.embed(np.asarray(posted, dtype=np.float32)) if posted else [])
    vectors = [
        next(embedded) if isinstance(e, BatchItem) else index.embedding_of(e) for e in examples
    ]
    out = np.asarray(vectors, dtype=np.float64).reshape(len(examples), index_dim(index, vectors))
    if not np.isfinite(out).all():  # huge features overflow when z-scored
        raise HTTPException(422, f"{role}: posted features cannot be embedded (not finite)")
    return out, [tracks[i] for i in ids]


def index_dim(index: SongIndex, vectors: list) -> int:
    """Embedding width, also for an empty list (no negatives)."""
    if vectors:
        return len(vectors[0])
    return len(index.embedding_of(int(index.ids()[0]))) if len(index) else 0


def rules_of(body: PlaylistRules, seeds: list[Track], *, artist_gap: int = 0) -> Rules:
    return Rules(
        max_per_artist=body.max_per_artist,
        max_per_album=body.max_per_album,
        min_duration=body.min_duration,
        max_duration=body.max_duration,
        banned_artists=frozenset(t.artist_id for t in seeds)
        if body.exclude_same_artist
        else (frozenset()),
        artist_gap=artist_gap,
    )


def filter_of(session: Session, body: PlaylistRules) -> SongFilter:
    check_genre(session, body.genre)
    return SongFilter(genre=body.genre, near=parse_near(body.near, body.radius_km))


def answer(
    request: Request, session: Session, index: ScoredIndex, neighbours, format: str
) -> PlaylistOut | Response:
    # Playlist steps are plain L2 distances (to a query, a waypoint or the last song):
    # their similarity is the l2 scoring's, as the README defines it.
    distances = np.array([n.distance for n in neighbours], dtype=np.float64)
    similarity = index.similarity_of(distances) if len(neighbours) else np.empty(0)
    neighbours = [
        dataclasses.replace(n, similarity=float(s))
        for n, s in zip(neighbours, similarity, strict=True)
    ]
    cards = service_of(request).cards
    if format == "m3u":
        return m3u_of(request, cards.found(neighbours))
    return json_body(b'{"results":' + cards.results_json(neighbours) + b"}")  # a PlaylistOut


def service_of(request: Request) -> Service:
    return request.app.state.service


def check_seeds(n: int, service: ServiceDep, what: str) -> None:
    if n > service.settings.playlist_max_seeds:
        raise HTTPException(422, f"at most {service.settings.playlist_max_seeds} {what}, got {n}")


@router.post("/recommend", response_model=PlaylistOut, responses=M3U_RESPONSES)
def recommend_songs(
    body: RecommendIn,
    request: Request,
    session: SessionDep,
    index: IndexDep,
    bundle: BundleDep,
    service: ServiceDep,
    format: ListFormat = "json",
) -> PlaylistOut | Response:
    """Songs like the positive examples and unlike the negative ones, with caps and MMR."""
    check_k(body.k, service)
    most = service.settings.playlist_max_diverse_k
    if body.diversity > 0 and body.k > most:
        raise HTTPException(422, f"with diversity, k must be at most {most}, got {body.k}")
    check_seeds(len(body.positive) + len(body.negative), service, "positive + negative examples")
    where = filter_of(session, body)
    positives, pos_tracks = embed_examples(
        body.positive, session=session, index=index, bundle=bundle, role="positive"
    )
    negatives, neg_tracks = embed_examples(
        body.negative, session=session, index=index, bundle=bundle, role="negative"
    )
    seeds = pos_tracks + neg_tracks
    excluded = describer(session)(body.exclude)  # unknown ids exclude nothing
    taken = Ledger(rules_of(body, seeds))
    # Seeds are ruled out with their duplicates (by distance and by title); excluded songs
    # by id and title (their embeddings would make each check |exclude| times dearer).
    taken.take(
        ids=[t.song_id for t in seeds] + body.exclude,
        titles=[title_key(t) for t in seeds + list(excluded.values())],
        embeddings=list(positives) + list(negatives),
    )
    neighbours = recommend(
        index=index,
        describe=describer(session),
        positives=positives,
        negatives=negatives,
        strategy=body.strategy,
        k=body.k,
        where=where,
        taken=taken,
        lam=1.0 - body.diversity,
        max_pool=service.settings.playlist_max_pool,
    )
    return answer(request, session, index, neighbours, format)


@router.get(
    "/songs/{a:int}/path/{b:int}",
    response_model=PlaylistOut,
    responses=M3U_RESPONSES,
    tags=["songs"],
)
def read_song_path(
    a: SongId,
    b: SongId,
    request: Request,
    session: SessionDep,
    index: IndexDep,
    service: ServiceDep,
    length: Annotated[int, Query(ge=2, description="Songs in the path, a and b included")] = 10,
    genre: Annotated[str | None, Query(description="Only this top-level genre")] = None,
    near: Annotated[str | None, Query(description="'LAT,LON': only artists near here")] = None,
    radius_km: Annotated[float | None, Query(description="Radius around near, km")] = None,
    max_per_artist: Annotated[int | None, Query(ge=1, description="Songs per artist")] = None,
    max_per_album: Annotated[int | None, Query(ge=1, description="Songs per album")] = None,
    min_duration: Annotated[float | None, Query(ge=0, description="Seconds")] = None,
    max_duration: Annotated[float | None, Query(ge=0, description="Seconds")] = None,
    variety: Annotated[
        float, Query(ge=0, le=4, description="0: the straight path; more: waypoints move")
    ] = 0.0,
    seed: Annotated[int, Query(ge=0, le=2**32 - 1, description="Draws variety's moves")] = 0,
    format: ListFormat = "json",
) -> PlaylistOut | Response:
    """`length` songs from a to b, each the nearest unused song to its evenly spaced waypoint."""
    limit = service.settings.playlist_max_length
    if length > limit:
        raise HTTPException(422, f"length must be between 2 and {limit}, got {length}")
    if a == b:
        raise HTTPException(422, f"a path needs two different songs; both ends are {a}")
    try:
        body = PlaylistRules(
            genre=genre,
            near=near,
            radius_km=radius_km,
            max_per_artist=max_per_artist,
            max_per_album=max_per_album,
            min_duration=min_duration,
            max_duration=max_duration,
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    get_song(session, a), get_song(session, b)  # 404s
    ends = stored(session, index, [a, b], "path")
    try:
        neighbours = song_path(
            index=index,
            describe=describer(session),
            start=ends[a],
            end=ends[b],
            length=length,
            where=filter_of(session, body),
            rules=rules_of(body, []),
            variety=variety,
            seed=seed,
            max_pool=service.settings.playlist_max_pool,
        )
    except TooFew as exc:
        raise HTTPException(422, str(exc)) from exc
    return answer(request, session, index, neighbours, format)


@router.post("/radio", response_model=PlaylistOut, responses=M3U_RESPONSES)
def read_radio(
    body: RadioIn,
    request: Request,
    session: SessionDep,
    index: IndexDep,
    service: ServiceDep,
    format: ListFormat = "json",
) -> PlaylistOut | Response:
    """The next n songs after the history: near the last played and the seeds, artists spaced."""
    limit = service.settings.playlist_max_length
    if body.n > limit:
        raise HTTPException(422, f"n must be between 1 and {limit}, got {body.n}")
    check_seeds(len(body.seeds), service, "seeds")
    where = filter_of(session, body)
    seeds = stored(session, index, body.seeds, "seeds")
    seed_vectors = np.stack([index.embedding_of(i) for i in body.seeds]).astype(np.float64)
    known = describer(session)(body.history)  # deleted songs in the history are skipped
    history = [known[i] for i in body.history if i in known and i in index]
    last = index.embedding_of(history[-1].song_id) if history else seed_vectors[-1]
    ledger = Ledger(rules_of(body, list(seeds.values()), artist_gap=body.artist_gap))
    ledger.take(
        ids=list(body.seeds) + list(body.history),
        titles=[title_key(t) for t in list(seeds.values()) + history],
        embeddings=list(seed_vectors),
        artists=[t.artist_id for t in history],
    )
    neighbours = radio_after(
        index=index,
        describe=describer(session),
        seeds=seed_vectors,
        last=np.asarray(last, dtype=np.float64),
        n=body.n,
        where=where,
        ledger=ledger,
        seed_weight=body.seed_weight,
        max_pool=service.settings.playlist_max_pool,
    )
    return answer(request, session, index, neighbours, format)
