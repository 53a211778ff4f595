"""ROC curves of the paper's artist-retrieval rankings, averaged over queries.

Each query ranks every other song by L2 distance with its artist's other songs
as positives: the same rankings whose AUC `training.metrics.mean_auc` averages.
Ties between distances are diagonal steps of the curve, so the area under one
query's curve is its AUC with ties counted as half. Curves are averaged
vertically: the mean true-positive rate over queries at each false-positive
rate of a common grid, so the area under the averaged curve is the mean AUC
(up to the grid's trapezoid error, at most half a grid step).

    >>> queries = draw_queries(artist_ids, rng=np.random.default_rng(0))
    >>> curve = averaged_roc(embeddings, artist_ids, queries)
    >>> curve.fpr, curve.tpr, curve.area
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.evaluation.metrics import squared_distances

# Queries whose distances are held at once: bounds memory at chunk x n_songs floats.
_QUERY_CHUNK = 256
DEFAULT_GRID_POINTS = 1001


@dataclass(frozen=True)
class AveragedROC:
    fpr: np.ndarray  # (n_points,) common false-positive rates, 0 to 1
    tpr: np.ndarray  # (n_points,) mean true-positive rate over queries at each fpr
    n_queries: int  # queries with both positives and negatives (the others have no curve)

    @property
    def area(self) -> float:
        return float(np.trapezoid(self.tpr, self.fpr))


def ranking_roc(distances: np.ndarray, relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (fpr, tpr) of the ROC of ranking songs by ascending distance.

    distances, relevant: (n_songs,) for the songs ranked (the query excluded).
    Songs at equal distance form one step, so ties give a diagonal segment.
    """
    order = np.argsort(distances, kind="stable")
    d, rel = distances[order], relevant[order]
    ends = np.r_[d[1:] != d[:-1], True]  # last song of each group of equal distances
    pos = np.r_[0, np.cumsum(rel)[ends]]
    neg = np.r_[0, np.cumsum(~rel)[ends]]
    return neg / neg[-1], pos / pos[-1]


def tpr_on_grid(fpr: np.ndarray, tpr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The piecewise-linear curve through the vertices, read at each grid point.

    Where the curve is vertical (positives only at one distance) the value is its
    top, which changes no area.
    """
    last = len(fpr) - 1
    # j: the last vertex at or left of g; j + 1 is then strictly right of it.
    j = np.minimum(np.searchsorted(fpr, grid, side="right") - 1, last - 1)
    left, right = fpr[j], fpr[j + 1]
    width = np.where(right > left, right - left, 1.0)
    t = np.clip((grid - left) / width, 0.0, 1.0)
    values = tpr[j] + t * (tpr[j + 1] - tpr[j])
    return np.where(grid >= fpr[last], tpr[last], values)


def averaged_roc(
    embeddings: np.ndarray,
    artist_ids: np.ndarray,
    queries: np.ndarray,
    *,
    n_points: int = DEFAULT_GRID_POINTS,
) -> AveragedROC:
    """Vertical average of the queries' ROC curves on n_points evenly spaced FPRs.

    embeddings: (n_songs, dim); artist_ids: (n_songs,); queries: indices into songs.
    Queries without a positive or without a negative are left out, as in mean_auc.
    """
    embeddings = np.asarray(embeddings)
    artist_ids = np.asarray(artist_ids)
    queries = np.asarray(queries, dtype=np.int64)
    grid = np.linspace(0.0, 1.0, n_points)
    total = np.zeros(n_points)
    counted = 0
    for start in range(0, len(queries), _QUERY_CHUNK):
        block = queries[start : start + _QUERY_CHUNK]
        distances = squared_distances(embeddings[block], embeddings)
        for row, query in enumerate(block):
            others = np.arange(len(artist_ids)) != query
            relevant = artist_ids[others] == artist_ids[query]
            if relevant.all() or not relevant.any():
                continue
            fpr, tpr = ranking_roc(distances[row, others], relevant)
            total += tpr_on_grid(fpr, tpr, grid)
            counted += 1
    tpr_mean = total / counted if counted else np.full(n_points, np.nan)
    return AveragedROC(fpr=grid, tpr=tpr_mean, n_queries=counted)
