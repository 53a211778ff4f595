"""A 2-D map of the catalogue: PCA of the model's embeddings of a bounded sample of songs.

Computed on first use and kept for the life of the process: songs added later are
not on it until a restart. The sample is evenly spaced over the songs in id order,
so the same catalogue always gives the same map.

    >>> cache = SongMapCache(max_points=3000)
    >>> song_map = cache.get(session, bundle.embed)
    >>> song_map.ids, song_map.xy            # (m,) int64, (m, 2) float64
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from app.catalogue.reads import read_features_of, read_song_ids, read_song_labels
from training.evaluation.maps import principal_plane


@dataclass(frozen=True)
class SongMap:
    ids: np.ndarray  # (m,) int64, ascending
    xy: np.ndarray  # (m, 2) float64: coordinates on the first two principal axes
    n_songs: int  # songs stored when the map was drawn (m <= n_songs)
    labels: list[tuple[str | None, str, str | None]]  # (title, artist, genre) per point


def evenly_spaced(ids: np.ndarray, max_points: int) -> np.ndarray:
    """At most max_points of the ids, spread evenly over them (all when few enough)."""
    if len(ids) <= max_points:
        return ids
    return ids[np.linspace(0, len(ids) - 1, max_points).round().astype(np.int64)]


def draw_song_map(
    session: Session, embed: Callable[[np.ndarray], np.ndarray], *, max_points: int
) -> SongMap:
    all_ids = read_song_ids(session)
    ids = evenly_spaced(all_ids, max_points)
    embeddings = embed(read_features_of(session, ids)) if len(ids) else np.empty((0, 2))
    return SongMap(
        ids=ids,
        xy=principal_plane(embeddings),
        n_songs=len(all_ids),
        labels=read_song_labels(session, ids),
    )


class SongMapCache:
    """The map, drawn once by whichever request needs it first."""

    def __init__(self, *, max_points: int):
        self.max_points = max_points
        self._map: SongMap | None = None
        self._lock = threading.Lock()

    def get(self, session: Session, embed: Callable[[np.ndarray], np.ndarray]) -> SongMap:
        with self._lock:  # concurrent first requests draw it once, not once each
            if self._map is None:
                self._map = draw_song_map(session, embed, max_points=self.max_points)
            return self._map
