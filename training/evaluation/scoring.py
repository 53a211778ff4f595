"""Scorings: how the L2 distance between two songs becomes the score that ranks them.

`l2` ranks by distance. `local-scaling` (NICDM, Schnitzer et al., JMLR 2012)
divides each distance by the geometric mean of the two songs' radii, a radius
being the mean distance to the song's k nearest catalogue songs (itself
excluded), so a song in a dense region no longer sits in everyone's top 10 (a
hub). `mutual-proximity` (Gaussian MP) turns a distance into the probability
that each song sees the other at least that close, under a Gaussian fitted to
each song's distances to (a sample of) the catalogue; its score is -log of that
probability, which ranks exactly as 1 - MP but keeps its resolution where MP
saturates at 1. Lower scores are more similar for every scoring.

This module is the one definition: evaluation (metrics, hubness) and the service
re-rank both call `scores`, with statistics from `neighbourhoods` (numpy, blockwise)
or from an index search (the service) under the same definitions.

    >>> scoring = Scoring("local-scaling", k=10)
    >>> stats = neighbourhoods(vectors, scoring=scoring)
    >>> s = scores(distances, scoring=scoring, queries=stats.take(rows), songs=stats)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np

SCORINGS = ("l2", "local-scaling", "mutual-proximity")
MAX_NEIGHBOURS = 1000  # radii over more neighbours than this stop being local
MIN_POOL, MAX_POOL = 100, 100_000  # L2 candidates the service re-ranks per query
# l2 re-ranks only to replace float32 distances by exact ones. A float32 ranking (a
# flat scan's |a|^2 + |b|^2 - 2ab, FAISS's (a - b)^2) can swap only songs within ~1e-5
# of each other's distance: `l2_margin` candidates beyond k catch those across the k-th
# place (fetched by the service's FAISS backend itself, which ranks them exactly).
L2_MARGIN = 10
MAX_SAMPLE = 100_000
ROWS_PER_BLOCK = 256  # distance rows per step: memory bounded at 256 x n float64
_TINY = 1e-12  # floor on radii and deviations: duplicates have radius 0


@dataclass(frozen=True)
class Scoring:
    """A scoring and its parameters; invalid values raise ValueError naming the allowed ones."""

    name: str = "l2"
    k: int = 10  # neighbours whose mean distance is a song's radius (local-scaling)
    pool: int = MIN_POOL  # service: at least max(10 k_results, pool) L2 candidates re-ranked
    sample: int = 2000  # mutual-proximity: catalogue songs each song's Gaussian is fitted to

    def __post_init__(self) -> None:
        if self.name not in SCORINGS:
            raise ValueError(f"unknown scoring {self.name!r}; allowed: {', '.join(SCORINGS)}")
        _check_range("scoring k", self.k, 1, MAX_NEIGHBOURS)
        _check_range("scoring pool", self.pool, MIN_POOL, MAX_POOL)
        _check_range("scoring sample", self.sample, 2, MAX_SAMPLE)

    def pool_for(self, k_results: int) -> int:
        """L2 candidates fetched to return k_results re-ranked songs: max(pool, 10 k) for
        the scorings that reorder them, k plus a margin for l2 (same order but rounding)."""
        if self.name == "l2":
            return k_results + l2_margin(k_results)
        return max(self.pool, 10 * k_results)

    def as_dict(self) -> dict[str, str | int]:
        return asdict(self)


def scoring_asked(name: str | None, k: int | None, *, recorded: Scoring | None = None) -> Scoring:
    """The scoring an evaluation was asked for (`musicsim evaluate`, POST /evaluate): `name`
    at k (Scoring's default k when None). With no name, `recorded` (a bundle's own, for its
    model space) at k when given, else its own k; without one, l2. Bad values: ValueError."""
    if name is None and recorded is not None:
        return recorded if k is None else replace(recorded, k=k)
    return Scoring(name or "l2") if k is None else Scoring(name or "l2", k=k)


def l2_margin(k: int) -> int:
    """Candidates beyond k that a float32 ranking must offer for the exact top k."""
    return max(L2_MARGIN, k // 4)


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be an integer from {low} to {high}, got {value!r}")


def parse_scoring(name: str, **parameters: int) -> Scoring:
    """A Scoring from a name given on a command line or in a request."""
    return Scoring(name.strip().lower(), **parameters)


@dataclass(frozen=True)
class Neighbourhoods:
    """Per song: its radius and the Gaussian of its distances to the catalogue.

    radius: (n,) mean L2 distance to the k nearest catalogue songs, itself excluded.
    mean, sd: (n,) mean and standard deviation of its L2 distances to the sample.
    """

    radius: np.ndarray
    mean: np.ndarray
    sd: np.ndarray

    def take(self, rows: np.ndarray) -> Neighbourhoods:
        return Neighbourhoods(self.radius[rows], self.mean[rows], self.sd[rows])

    def __len__(self) -> int:
        return len(self.radius)


TEMPORARY_BYTES = 64 * 1024  # see exact_distances


def exact_distances(queries: np.ndarray, songs: np.ndarray) -> np.ndarray:
    """(n_queries, n_songs) L2 distances as sqrt(sum((q - s)^2)) in float64.

    No cancellation: a song's own vector is at distance exactly 0 and close
    neighbours keep their order (|a|^2 + |b|^2 - 2ab loses both in float32).
    For the few candidates the service re-ranks, not for whole catalogues.
    """
    q = np.atleast_2d(np.asarray(queries, dtype=np.float64))
    s = np.asarray(songs).reshape(-1, q.shape[1])
    out = np.empty((len(q), len(s)))
    # Blocks of songs small enough that their float64 temporaries stay below glibc's
    # mmap threshold (128 KiB), where a larger one may be fresh zeroed pages at every
    # call: in one process holding a 220 MB array, 58 candidates x 518 dimensions took
    # 235 us as one (q - s) ** 2 over a 3-d array against about 40 elsewhere; the route's
    # search measured 0.95x the time with blocks. Same values, bit for bit.
    block = max(1, TEMPORARY_BYTES // (8 * max(q.shape[1], 1)))
    for start in range(0, len(s), block):
        part = np.asarray(s[start : start + block], dtype=np.float64)
        for i, query in enumerate(q):
            difference = part - query
            np.square(difference, out=difference)
            out[i, start : start + block] = np.sqrt(difference.sum(axis=1))
    return out


def sample_rows(n_songs: int, *, scoring: Scoring, seed: int = 0) -> np.ndarray:
    """Rows of the catalogue mutual proximity fits its Gaussians to: all when few enough."""
    if n_songs <= scoring.sample:
        return np.arange(n_songs)
    return np.sort(np.random.default_rng(seed).choice(n_songs, scoring.sample, replace=False))


def gaussians(distances: np.ndarray, *, own: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(mean, sd) of each row of L2 distances to the sample, leaving out True cells of `own`."""
    d = np.asarray(distances, dtype=np.float64)
    keep = np.ones(d.shape, dtype=bool) if own is None else ~own
    count = np.maximum(keep.sum(1), 1)
    mean = np.where(keep, d, 0.0).sum(1) / count
    var = np.where(keep, (d - mean[:, None]) ** 2, 0.0).sum(1) / count
    return mean, np.sqrt(var)


def neighbourhoods(vectors: np.ndarray, *, scoring: Scoring, seed: int = 0) -> Neighbourhoods:
    """Radii and Gaussians of every song of a catalogue, blockwise (never an n x n matrix)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    if n < 2:
        raise ValueError("a scoring needs at least two songs")
    k = min(scoring.k, n - 1)
    sample = sample_rows(n, scoring=scoring, seed=seed)
    radius, mean, sd = (np.empty(n) for _ in range(3))
    norms = (vectors * vectors).sum(1)
    for start in range(0, n, ROWS_PER_BLOCK):
        rows = np.arange(start, min(start + ROWS_PER_BLOCK, n))
        block = vectors[rows]
        sq = (block * block).sum(1)[:, None] + norms[None, :] - 2.0 * (block @ vectors.T)
        d = np.sqrt(np.maximum(sq, 0.0))
        d[np.arange(len(rows)), rows] = np.inf  # itself is not its own neighbour
        radius[rows] = np.partition(d, k - 1, axis=1)[:, :k].mean(1)
        mean[rows], sd[rows] = gaussians(d[:, sample], own=sample[None, :] == rows[:, None])
    return Neighbourhoods(radius, mean, sd)


def scores(
    distances: np.ndarray,
    *,
    scoring: Scoring,
    queries: Neighbourhoods | None = None,
    songs: Neighbourhoods | None = None,
) -> np.ndarray:
    """Scores (lower = more similar) of L2 distances, shape (n_queries, n_songs).

    distances: (n_queries, n_songs) L2 (not squared) distances; `queries` and
    `songs` hold the statistics of the rows and the columns (unused by l2).
    """
    if scoring.name == "l2":
        return np.asarray(distances, dtype=np.float64)
    if queries is None or songs is None:
        raise ValueError(f"{scoring.name} needs the songs' neighbourhoods")
    return _scores(distances, scoring, _column(queries, None), _column(songs, ...))


def pair_scores(
    distances: np.ndarray, *, scoring: Scoring, first: Neighbourhoods, second: Neighbourhoods
) -> np.ndarray:
    """Scores of n pairs at once: (n,) distances between first[i] and second[i]."""
    return _scores(distances, scoring, first, second)


def _column(stats: Neighbourhoods, axis) -> Neighbourhoods:
    # Rows as a column (queries) or as a row (songs) of the score matrix.
    shape = (slice(None), None) if axis is None else (None, slice(None))
    return Neighbourhoods(stats.radius[shape], stats.mean[shape], stats.sd[shape])


def _scores(d, scoring: Scoring, a: Neighbourhoods, b: Neighbourhoods) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    if scoring.name == "l2":
        return d
    if scoring.name == "local-scaling":
        return d / np.sqrt(np.maximum(a.radius, _TINY) * np.maximum(b.radius, _TINY))
    # log P(X > d) for each song's Gaussian X; MP = P(X_a > d) P(X_b > d).
    log_sf_a = _log_ndtr((a.mean - d) / np.maximum(a.sd, _TINY))
    log_sf_b = _log_ndtr((b.mean - d) / np.maximum(b.sd, _TINY))
    return -(log_sf_a + log_sf_b)


def _log_ndtr(z: np.ndarray) -> np.ndarray:
    """log of the standard normal CDF, accurate far into the tails (no underflow to -inf).

    torch's, because torch is a core dependency of the service and scipy is not.
    """
    import torch

    return torch.special.log_ndtr(torch.from_numpy(np.asarray(z, dtype=np.float64))).numpy()


def scored_blocks(
    vectors: np.ndarray,
    rows: np.ndarray,
    *,
    scoring: Scoring,
    stats: Neighbourhoods | None,
    rows_per_block: int = ROWS_PER_BLOCK,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows of a block, their scores against every song), one block of queries at a time.

    l2 yields squared distances (same ranking, no square roots); other scorings
    their scores. The query's own column is left as it is.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = (vectors * vectors).sum(1)
    rows = np.asarray(rows, dtype=np.int64)
    for start in range(0, len(rows), rows_per_block):
        block = rows[start : start + rows_per_block]
        q = vectors[block]
        sq = np.maximum((q * q).sum(1)[:, None] + norms[None, :] - 2.0 * (q @ vectors.T), 0.0)
        if scoring.name == "l2":
            yield block, sq
        else:
            assert stats is not None
            yield (
                block,
                scores(np.sqrt(sq), scoring=scoring, queries=stats.take(block), songs=stats),
            )


def neighbourhoods_for(vectors: np.ndarray, *, scoring: Scoring) -> Neighbourhoods | None:
    """What a scoring needs of a catalogue: nothing for l2."""
    return None if scoring.name == "l2" else neighbourhoods(vectors, scoring=scoring)
