"""POST /songs/audio: neighbours of an uploaded recording, optionally stored."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, HTTPException, Request, Response, UploadFile
from pydantic import ValidationError

from app.audio_workers import (
    AnalysisFailed,
    AnalysisRefused,
    AnalysisTimeout,
    AudioWorkers,
    WorkersBusy,
    analyse_audio,
)
from app.catalogue import CatalogueError
from app.catalogue.writes import NewSong
from app.deps import ApiKeyHeader, BundleDep, IndexDep, ServiceDep, SessionDep, check_api_key
from app.routes.songs import check_genre, check_k, similar_songs
from app.schemas import MAX_ID, AudioOut, ScoringName, SimilarFilters, refuse_nul
from app.similarity import add_and_index, search_distinct
from training.extras import MissingExtra, ensure

router = APIRouter(prefix="/songs", tags=["songs"])


def analyse_upload(
    workers: AudioWorkers, data: bytes, *, name: str, excerpt_seconds: float
) -> np.ndarray:
    """(518,) FMA features of the middle excerpt of an uploaded file, from a worker."""
    try:  # the audio extra may be absent: a features-only service answers the rest
        ensure("librosa", extra="audio")
    except MissingExtra as exc:
        raise HTTPException(501, f"this server cannot analyse audio: {exc}") from exc
    if not data:
        raise HTTPException(422, f"{name}: the upload is empty")
    retry = {"Retry-After": str(max(1, round(workers.timeout_s)))}
    try:
        return workers.run(analyse_audio, data, excerpt_seconds)
    except AnalysisRefused as exc:  # undecodable, or too short or too low a rate to analyse
        raise HTTPException(422, f"{name}: {exc.reason}") from exc
    except WorkersBusy as exc:
        raise HTTPException(503, f"{exc}: retry later", headers=retry) from exc
    except AnalysisTimeout as exc:
        raise HTTPException(503, f"{name}: {exc}", headers=retry) from exc
    except AnalysisFailed as exc:
        raise HTTPException(422, f"{name}: {exc}") from exc


def artist_ref(artist: str) -> int | str:
    """An artist id when the field is ASCII digits (and a possible id), else a name."""
    if not (artist.isascii() and artist.isdigit()):
        return artist
    if int(artist) > MAX_ID:
        raise HTTPException(422, f"artist id {artist} is out of range (at most {MAX_ID})")
    return int(artist)


@router.post("/audio", response_model=AudioOut)
def read_similar_to_audio(
    file: Annotated[UploadFile, File(description="WAV, FLAC, OGG/Vorbis or MP3")],
    request: Request,
    response: Response,
    session: SessionDep,
    index: IndexDep,
    bundle: BundleDep,
    service: ServiceDep,
    x_api_key: ApiKeyHeader = None,
    k: Annotated[int, Form(ge=1)] = 10,
    exclude_artist: Annotated[int | None, Form(ge=0, le=MAX_ID)] = None,
    genre: Annotated[str | None, Form()] = None,
    near: Annotated[str | None, Form(description="'LAT,LON'")] = None,
    radius_km: Annotated[float | None, Form()] = None,
    add: Annotated[bool, Form(description="Also store the song (needs title, artist)")] = False,
    title: Annotated[str | None, Form(max_length=1024)] = None,
    artist: Annotated[str | None, Form(max_length=512, description="Artist id or name")] = None,
    scoring: Annotated[ScoringName | None, Form(description="Default MUSICSIM_SCORING")] = None,
) -> AudioOut:
    """Neighbours of an uploaded recording; with add=true it is stored as a cold-start song."""
    check_k(k, service)
    try:
        refuse_nul(title=title, artist=artist, genre=genre)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    check_genre(session, genre)
    try:
        filters = SimilarFilters(
            exclude_artist=exclude_artist, genre=genre, near=near, radius_km=radius_km
        )
    except ValidationError as exc:
        raise HTTPException(422, "; ".join(e["msg"] for e in exc.errors())) from exc
    if add:
        check_api_key(service.settings.api_key, x_api_key)
        if not title or not artist:
            raise HTTPException(422, "add=true needs a title and an artist")
    name = file.filename or "upload"
    features = analyse_upload(
        request.app.state.audio_workers,
        file.file.read(),
        name=name,
        excerpt_seconds=service.settings.audio_excerpt_seconds,
    )
    embedding = bundle.embed(features[None, :])
    if not np.isfinite(embedding).all():
        raise HTTPException(422, f"{name}: its features cannot be embedded (not finite)")
    found = search_distinct(
        index, embedding, keys_of=service.cards.recording_keys, k=k, where=filters.to_filter(),
        scoring=scoring,
    )  # fmt: skip
    results = similar_songs(session, found[0])
    song_id = None
    if add:
        assert title is not None and artist is not None  # checked before the upload was read
        new = NewSong(
            title=title,
            artist=artist_ref(artist),
            features=features,
            genre=genre,
        )
        try:
            song_id = add_and_index(session, index, bundle.embed, new, cards=service.cards)
        except CatalogueError as exc:
            raise HTTPException(422, str(exc)) from exc
        response.status_code = 201
    return AudioOut(query=None, results=results, id=song_id)
