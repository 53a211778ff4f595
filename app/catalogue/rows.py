"""The attributes of songs that the index's filters need, in index order.

>>> rows = SongRows.from_columns(ids, artist_ids, genres, latitudes, longitudes)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SongRows:
    """Attributes of songs in index order; latitude/longitude NaN where unknown."""

    ids: np.ndarray  # int64
    artist_ids: np.ndarray  # int64
    genres: np.ndarray  # object: top-level genre title or None
    latitudes: np.ndarray  # float64
    longitudes: np.ndarray  # float64

    @classmethod
    def from_columns(cls, ids, artist_ids, genres, latitudes, longitudes) -> SongRows:
        """Rows from plain sequences (e.g. database columns); None coordinates become NaN."""
        return cls(
            ids=np.asarray(ids, dtype=np.int64),
            artist_ids=np.asarray(artist_ids, dtype=np.int64),
            genres=np.asarray(genres, dtype=object),
            latitudes=_floats(latitudes),
            longitudes=_floats(longitudes),
        )

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


def _floats(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
