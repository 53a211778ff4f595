"""Request and response bodies of the playlist routes (/recommend, /radio, paths).

Kept beside app/schemas.py, whose result item (`SimilarSong`) every list here uses.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from app.schemas import BatchItem, Id, K, SimilarSong, Strict, parse_near

MAX_EXCLUDE = 2_000  # ids in `exclude` or `history`: more than any listening session
MAX_DURATION = 86_400.0  # seconds in a day


class PlaylistRules(Strict):
    """Filters and caps shared by every playlist request."""

    genre: str | None = Field(None, description="Only this top-level genre")
    near: str | None = Field(None, description="'LAT,LON': only artists near this place")
    radius_km: float | None = Field(None, description="Radius around `near`, in km")
    exclude_same_artist: bool = Field(False, description="No song by a seed song's artist")
    max_per_artist: int | None = Field(None, ge=1, description="Most songs by one artist")
    max_per_album: int | None = Field(None, ge=1, description="Most songs from one album")
    min_duration: float | None = Field(
        None, ge=0, le=MAX_DURATION, description="Seconds; songs of unknown length are left out"
    )
    max_duration: float | None = Field(
        None, ge=0, le=MAX_DURATION, description="Seconds; songs of unknown length are left out"
    )

    @model_validator(mode="after")
    def _consistent(self) -> PlaylistRules:
        parse_near(self.near, self.radius_km)
        if (
            self.min_duration is not None
            and self.max_duration is not None
            and self.min_duration > self.max_duration
        ):
            raise ValueError(
                f"min_duration ({self.min_duration}) is above max_duration ({self.max_duration})"
            )
        return self


Example = Id | BatchItem


class RecommendIn(PlaylistRules):
    positive: list[Example] = Field(
        min_length=1, description="Songs to be like: stored ids and/or {features: [518 numbers]}"
    )
    negative: list[Example] = Field(default_factory=list, description="Songs to be unlike")
    strategy: Literal["average", "best"] = Field(
        "average",
        description="average: near mean(pos) + (mean(pos) - mean(neg)); "
        "best: max similarity to a positive minus max similarity to a negative (-L2)",
    )
    k: K = 10
    exclude: list[Id] = Field(
        default_factory=list, max_length=MAX_EXCLUDE, description="Never return these songs"
    )
    diversity: float = Field(
        0.0,
        ge=0,
        le=1,
        description="1 - lambda of maximal marginal relevance: 0 is plain similarity order",
    )


class RadioIn(PlaylistRules):
    seeds: list[Id] = Field(min_length=1, description="The songs the radio was started from")
    history: list[Id] = Field(
        default_factory=list,
        max_length=MAX_EXCLUDE,
        description="Songs played so far, oldest first; none is returned again",
    )
    n: K = 10
    seed_weight: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Each next song is nearest to (1 - w) x last played + w x mean of the seeds",
    )
    artist_gap: int = Field(
        3, ge=0, le=1000, description="No artist twice within this many consecutive songs"
    )


class PlaylistOut(BaseModel):
    results: list[SimilarSong] = Field(description="The list, in playing order")
