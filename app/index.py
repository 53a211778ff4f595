"""The FAISS index of song embeddings, with the song attributes its filters need.

The wrapper owns the row <-> song-id mapping, trims FAISS's -1 padding, and
applies filters (other artists only, genre, near a place) as a selector inside
the search, so a filtered query still returns k songs whenever k songs match.

    >>> index = SongIndex(dim=518)
    >>> index.add(SongRows(ids, artist_ids, genres, latitudes, longitudes), embeddings)
    >>> index.search(vectors, k=10, where=SongFilter(genre="Rock"))
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class SongRows:
    """Attributes of songs in index order; latitude/longitude NaN where unknown."""

    ids: np.ndarray  # int64
    artist_ids: np.ndarray  # int64
    genres: np.ndarray  # object: top-level genre title or None
    latitudes: np.ndarray  # float64
    longitudes: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls) -> SongRows:
        f = np.empty(0, np.float64)
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, object), f, f)

    def extend(self, other: SongRows) -> SongRows:
        return SongRows(
            *(
                np.concatenate([mine, theirs])
                for mine, theirs in zip(self.columns(), other.columns(), strict=True)
            )
        )

    def columns(self) -> tuple[np.ndarray, ...]:
        return (self.ids, self.artist_ids, self.genres, self.latitudes, self.longitudes)


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


def haversine_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Great-circle distances from one point to many, in km (NaN where unknown)."""
    p1, p2 = np.radians(lat), np.radians(lats)
    dp, dl = p2 - p1, np.radians(lons - lon)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


class ReadWriteLock:
    """Many readers at once, or one writer; a waiting writer holds off new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writing and self._readers == 0)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class SongIndex:
    """Exact L2 search over song embeddings; thread-safe.

    Searches share a read lock; adds take the write lock, because FAISS may
    reallocate its storage while adding and a search must never overlap that.
    """

    def __init__(self, dim: int):
        self.dim = dim
        self._faiss = faiss.IndexFlatL2(dim)
        self._rows = SongRows.empty()
        self._row_of: dict[int, int] = {}
        self._lock = ReadWriteLock()

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, song_id: int) -> bool:
        return song_id in self._row_of

    def add(self, rows: SongRows, embeddings: np.ndarray) -> int:
        """Append songs not yet indexed (ids already present are skipped); returns how many.

        Skipping makes adding idempotent: the request that stored a song and the
        follower that tails the database may both offer it.
        """
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        if vectors.shape != (len(rows), self.dim):
            raise ValueError(f"expected ({len(rows)}, {self.dim}) embeddings, got {vectors.shape}")
        if len(np.unique(rows.ids)) != len(rows):
            raise ValueError("song ids repeat within one add")
        with self._lock.writing():
            new = np.array([int(i) not in self._row_of for i in rows.ids], dtype=bool)
            if not new.any():
                return 0
            fresh = SongRows(*(column[new] for column in rows.columns()))
            start = len(self._rows)
            self._faiss.add(vectors[new])
            self._rows = self._rows.extend(fresh)
            self._row_of.update((int(i), start + n) for n, i in enumerate(fresh.ids))
            return int(new.sum())

    def ids(self) -> np.ndarray:
        """A copy of the indexed song ids, in index order."""
        with self._lock.reading():
            return self._rows.ids.copy()

    def missing(self, song_ids: np.ndarray) -> np.ndarray:
        """Those of song_ids that are not indexed, in their order."""
        ids = np.asarray(song_ids, dtype=np.int64)
        with self._lock.reading():
            return ids[~np.isin(ids, self._rows.ids)]

    def embedding_of(self, song_id: int) -> np.ndarray:
        with self._lock.reading():
            return self._faiss.reconstruct(self._row_of[song_id])

    def search(
        self,
        vectors: np.ndarray,
        *,
        k: int,
        where: SongFilter | None = None,
        exclude_song: int | None = None,
    ) -> list[list[Neighbour]]:
        """The k nearest songs to each query vector (nearest first) that pass the filter."""
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        where = where or SongFilter()
        with self._lock.reading():
            allowed = self._allowed_rows(where, exclude_song)
            if allowed is None:
                distances, rows = self._faiss.search(queries, k)
            else:
                distances, rows = self._search_selected(queries, k, allowed)
            ids = self._rows.ids
        return [
            [
                Neighbour(int(ids[r]), float(np.sqrt(max(d, 0.0))))
                for r, d in zip(row_ids, dists, strict=True)
                if r >= 0  # FAISS pads with -1 when fewer than k songs pass
            ]
            for row_ids, dists in zip(rows, distances, strict=True)
        ]

    def _allowed_rows(self, where: SongFilter, exclude_song: int | None) -> np.ndarray | None:
        """Boolean mask of rows that may be returned, or None when all may."""
        if where.is_empty() and exclude_song is None:
            return None
        rows = self._rows
        mask = np.ones(len(rows), dtype=bool)
        if exclude_song is not None and exclude_song in self._row_of:
            mask[self._row_of[exclude_song]] = False
        if where.exclude_artist is not None:
            mask &= rows.artist_ids != where.exclude_artist
        if where.genre is not None:
            mask &= rows.genres == where.genre
        if where.near is not None:
            near = where.near
            km = haversine_km(near.latitude, near.longitude, rows.latitudes, rows.longitudes)
            mask &= np.nan_to_num(km, nan=np.inf) <= near.radius_km
        return mask

    def _search_selected(
        self, queries: np.ndarray, k: int, allowed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        bits = np.packbits(allowed, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
        params = faiss.SearchParameters(sel=selector)
        return self._faiss.search(queries, k, params=params)
