"""What every index backend offers: the interface routes, start-up and the follower use.

    >>> index: SongIndex = open_index(session, settings, bundle)   # FAISS or Milvus
    >>> index.search(vectors, k=10, where=SongFilter(genre="Rock"), exclude_song=2)

`FaissSongIndex` (app.index.faiss_index) and `MilvusSongIndex` (app.index.milvus)
implement it; tests/app/index/test_protocol.py runs the same checks on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from app.catalogue.rows import SongRows

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class Near:
    latitude: float
    longitude: float
    radius_km: float


@dataclass(frozen=True)
class SongFilter:
    """Which songs may be returned. Empty means all."""

    exclude_artist: int | None = None  # drop this artist's songs (discovery of others)
    genre: str | None = None  # only this top-level genre
    near: Near | None = None  # only artists within radius_km of a point

    def is_empty(self) -> bool:
        return self.exclude_artist is None and self.genre is None and self.near is None


@dataclass(frozen=True)
class Neighbour:
    song_id: int
    distance: float  # L2 distance in the embedding space
    # In [0, 1]: the share of random catalogue pairs scored worse (app.index.scored); the
    # backends leave it None, the scored index that wraps them sets it.
    similarity: float | None = None


def haversine_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Great-circle distances from one point to many, in km (NaN where unknown)."""
    p1, p2 = np.radians(lat), np.radians(lats)
    dp, dl = p2 - p1, np.radians(lons - lon)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@runtime_checkable
class SongIndex(Protocol):
    """Song embeddings searchable by L2 distance, with the filters of `SongFilter`."""

    @property
    def kind(self) -> str:
        """What is searched: a FAISS kind (flat, hnsw, ...) or "milvus"."""
        ...

    def __len__(self) -> int: ...

    def __contains__(self, song_id: int) -> bool: ...

    def add(self, rows: SongRows, embeddings: np.ndarray) -> int:
        """Index songs not yet indexed (present ids are skipped); returns how many were new."""
        ...

    def remove(self, song_ids: np.ndarray) -> int:
        """Never return these songs again (absent ids are ignored); returns how many were
        indexed."""
        ...

    def replace(self, rows: SongRows, embeddings: np.ndarray) -> int:
        """Index these songs' new vectors and attributes in place of their old ones (songs
        not indexed are added) in one step: a concurrent search finds each song, old or
        new, never neither. Returns how many were indexed before."""
        ...

    def ids(self) -> np.ndarray:
        """The indexed song ids (int64)."""
        ...

    def missing(self, song_ids: np.ndarray) -> np.ndarray:
        """Those of song_ids that are not indexed, in their order."""
        ...

    def embedding_of(self, song_id: int) -> np.ndarray:
        """The stored embedding of an indexed song; KeyError when absent."""
        ...

    def embeddings_of(self, song_ids: np.ndarray) -> np.ndarray:
        """(len(song_ids), dim) stored embeddings, in that order; KeyError for one absent."""
        ...

    def search(
        self,
        vectors: np.ndarray,
        *,
        k: int,
        where: SongFilter | None = None,
        exclude_song: int | None = None,
    ) -> list[list[Neighbour]]:
        """The k nearest songs to each query vector (nearest first) that pass the filter."""
        ...

    def close(self) -> None:
        """Release what the backend holds open (connections); idempotent."""
        ...
