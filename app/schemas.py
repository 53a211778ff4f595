"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from app.index.protocol import Near, SongFilter
from app.orm import Source
from training.data.features import N_FEATURES

# Exactly 518 finite numbers: NaN and infinity are refused (Python's JSON parser
# accepts the tokens NaN and Infinity, so the type must say so).
# Features are stored and embedded as float32: a larger magnitude would become infinity.
FLOAT32_MAX = float(np.finfo(np.float32).max)
Feature = Annotated[FiniteFloat, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
FeatureVector = Annotated[
    list[Feature],
    Field(
        min_length=N_FEATURES,
        max_length=N_FEATURES,
        description=f"The {N_FEATURES} FMA features, in features.csv column order",
    ),
]
# Ids are 64-bit integers in the database: a larger one names no row (and overflows SQLite).
MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=0, le=MAX_ID)]
# Half the Earth's circumference: any larger radius covers the whole globe.
MAX_RADIUS_KM = 20_038.0
K = Annotated[int, Field(ge=1, description="How many neighbours to return")]


def parse_near(near: str | None, radius_km: float | None) -> Near | None:
    """'LAT,LON' plus a radius -> Near; a ValueError says what is wrong."""
    if near is None and radius_km is None:
        return None
    if near is None or radius_km is None:
        raise ValueError("near and radius_km go together: near=LAT,LON&radius_km=R")
    parts = near.split(",")
    try:
        lat, lon = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"near must be 'LAT,LON' in degrees, got {near!r}") from None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"near {near!r} is off the globe: latitude -90..90, longitude -180..180")
    if not 0 < radius_km <= MAX_RADIUS_KM:
        raise ValueError(f"radius_km must be in (0, {MAX_RADIUS_KM:.0f}], got {radius_km}")
    return Near(lat, lon, radius_km)


def refuse_nul(**fields: str | None) -> None:
    """ValueError naming the first field holding NUL: PostgreSQL text cannot store it."""
    for name, value in fields.items():
        if isinstance(value, str) and "\x00" in value:
            raise ValueError(f"{name} must not contain NUL characters")


class Strict(BaseModel):
    # strict: `false` must not pass for artist 0, nor "5" for a number.
    model_config = ConfigDict(extra="forbid", strict=True)


class ArtistRef(BaseModel):
    id: int
    name: str


class SongOut(BaseModel):
    id: int
    title: str | None
    artist: ArtistRef
    genre: str | None
    duration: float | None
    album: str | None
    location: str | None
    latitude: float | None
    longitude: float | None
    source: Source
    # A library song's file, relative to the library root, and where to stream it from.
    file: str | None = None
    audio_url: str | None = None
    album_artist: str | None = None
    track_number: int | None = Field(None, description="The song's number on its album")


class SimilarSong(BaseModel):
    id: int
    title: str | None
    artist: ArtistRef
    genre: str | None
    distance: float = Field(description="L2 distance in the embedding space (exact, float64)")
    similarity: float | None = Field(
        None,
        description="In [0, 1]: the share of random catalogue song pairs that the scoring "
        "ranks as less alike than this result (README, 'Scorings')",
    )
    album: str | None = None
    duration: float | None = Field(None, description="Seconds, when known")
    audio_url: str | None = None  # GET /songs/{id}/audio, for songs that keep their file
    album_artist: str | None = None
    track_number: int | None = None


class SimilarOut(BaseModel):
    query: SongOut | None = Field(description="The query song, or null for posted features")
    results: list[SimilarSong]


class SimilarFilters(Strict):
    exclude_artist: Id | None = Field(None, description="Leave out this artist's songs")
    genre: str | None = Field(None, description="Only this top-level genre")
    near: str | None = Field(None, description="'LAT,LON': only artists near this place")
    radius_km: float | None = Field(None, description="Radius around `near`, in km")

    @model_validator(mode="after")
    def _near_is_well_formed(self) -> SimilarFilters:
        parse_near(self.near, self.radius_km)
        return self

    def to_filter(self) -> SongFilter:
        return SongFilter(
            exclude_artist=self.exclude_artist,
            genre=self.genre,
            near=parse_near(self.near, self.radius_km),
        )


ScoringName = Literal["l2", "local-scaling", "mutual-proximity"]  # training.evaluation.scoring
ScoringField = Field(None, description="How candidates are ranked; default MUSICSIM_SCORING")


class FeaturesQuery(SimilarFilters):
    features: FeatureVector
    k: K = 10
    scoring: ScoringName | None = ScoringField


class BatchItem(Strict):
    features: FeatureVector


class BatchQuery(SimilarFilters):
    items: list[BatchItem] = Field(min_length=1)
    k: K = 10
    scoring: ScoringName | None = ScoringField


class BatchOut(BaseModel):
    results: list[SimilarOut]


class SongIn(Strict):
    title: str = Field(min_length=1, max_length=1024)
    artist: Id | Annotated[str, Field(min_length=1, max_length=512)] = Field(
        description="An existing artist's id, or a name (an existing name is reused)"
    )
    genre: str | None = Field(None, description="A top-level genre title")
    duration: float | None = Field(None, ge=0, le=86_400)
    location: str | None = Field(None, max_length=512, description="For a new artist only")
    latitude: float | None = Field(None, ge=-90, le=90, description="For a new artist only")
    longitude: float | None = Field(None, ge=-180, le=180, description="For a new artist only")
    features: FeatureVector

    @model_validator(mode="after")
    def _no_nul(self) -> SongIn:
        artist = self.artist if isinstance(self.artist, str) else None
        refuse_nul(title=self.title, artist=artist, genre=self.genre, location=self.location)
        return self


class SongPatch(Strict):
    """Fields to change; those left out stay as they are, null clears a field."""

    title: str | None = Field(None, min_length=1, max_length=1024)
    album: str | None = Field(None, max_length=1024)
    album_artist: str | None = Field(None, max_length=1024)
    track_number: int | None = Field(None, ge=1, le=9999)
    genre: str | None = Field(None, description="A top-level genre title")
    duration: float | None = Field(None, ge=0, le=86_400)
    features: FeatureVector | None = Field(None, description="New features: re-embedded at once")

    @model_validator(mode="after")
    def _features_cannot_be_cleared(self) -> SongPatch:
        refuse_nul(
            title=self.title, album=self.album, album_artist=self.album_artist, genre=self.genre
        )
        if "features" in self.model_fields_set and self.features is None:
            raise ValueError("features cannot be cleared: give 518 numbers or leave them out")
        return self


class AudioOut(SimilarOut):
    id: int | None = Field(description="The stored song's id when add=true, else null")


class CreatedOut(BaseModel):
    id: int


class LabelledSong(Strict):
    artist: int | str
    features: FeatureVector


class EvaluateIn(Strict):
    space: Literal["raw", "zscore", "model"] = "model"
    scoring: ScoringName | None = Field(
        None,
        description="How distances rank songs; default: the bundle's scoring for the "
        "model space, l2 for raw and zscore",
    )
    scoring_k: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Neighbours of a song's radius; default: the bundle's when the model "
        "space is scored with the bundle's scoring, else 10",
    )
    seed: int = 0
    songs: list[LabelledSong] | None = Field(
        None, min_length=2, description="A labelled set to score instead of the catalogue"
    )
    every_track: bool = Field(
        False, description="Every song with a same-artist song is a query, not one per artist"
    )


class EvaluateOut(BaseModel):
    mean_auc: float
    n_queries: int
    n_songs: int
    space: str
    mean_average_precision: float
    recall_at_10: float
    ndcg_at_10: float
    scoring: str
    scoring_k: int = Field(description="Neighbours of a song's radius the scoring used")
    hubness_skewness: float = Field(description="Skewness of the songs' top-10 k-occurrence")
    antihub_share: float = Field(description="Share of songs in no song's top 10")
    max_k_occurrence: int = Field(description="Most top-10 lists one song is in")
    coverage: float = Field(description="Share of songs in at least one top 10")


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorOut(BaseModel):
    detail: str | list[FieldError] = Field(
        description="What is wrong: a sentence, or one entry per invalid field"
    )


class ModelInfo(BaseModel):
    name: str
    manifest_sha256: str


class NeighbourhoodsInfo(BaseModel):
    """The per-song table that local-scaling and mutual-proximity need."""

    state: Literal["ready", "building", "failed", "not-started"] = Field(
        description="Searches with those scorings answer 503 until it is ready"
    )
    done: int = Field(description="Songs whose neighbourhood is computed")
    total: int = Field(description="Songs indexed when the computation started")
    error: str | None = Field(None, description="Why the last computation failed, if it did")


class ScoringInfo(BaseModel):
    name: str = Field(description="The default scoring (MUSICSIM_SCORING or the bundle's)")
    k: int = Field(description="Neighbours whose mean distance is a song's radius")
    pool: int = Field(description="At least this many L2 candidates are re-ranked")
    allowed: list[str]
    neighbourhoods: NeighbourhoodsInfo


class AudioInfo(BaseModel):
    """The processes that analyse uploads (POST /songs/audio, /songs/similar/audio)."""

    workers: int = Field(description="MUSICSIM_AUDIO_WORKERS")
    up: int = Field(
        description="Workers started and, with MUSICSIM_AUDIO_WARM_UP, done compiling the "
        "feature recipe; the others start with the next upload (or are still warming up)"
    )


class HealthOut(BaseModel):
    status: Literal["ok"]
    songs_indexed: int
    # As built (IVF kinds may fall back to simpler ones); "milvus" on the Milvus backend.
    index_kind: Literal["flat", "hnsw", "ivf", "ivfpq", "milvus"]
    model: ModelInfo
    scoring: ScoringInfo
    audio: AudioInfo


class SongPage(BaseModel):
    total: int = Field(description="How many songs match, over all pages")
    limit: int
    offset: int
    items: list[SongOut] = Field(description="This page, in ascending id order")


class GenresOut(BaseModel):
    genres: list[str] = Field(description="Top-level genre titles, sorted")


class SongMapOut(BaseModel):
    """Columns of equal length, one entry per song on the map (compact for thousands)."""

    n_songs: int = Field(description="Songs stored when the map was drawn")
    ids: list[int]
    x: list[float] = Field(description="First principal axis of the embeddings")
    y: list[float] = Field(description="Second principal axis")
    titles: list[str | None]
    artists: list[str]
    genres: list[str | None]
