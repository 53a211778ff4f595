"""Artist-retrieval metrics of the paper, as pure numpy functions.

One query track per evaluation artist ranks every other evaluation track by L2
distance; the artist's other tracks are relevant. The ROC AUC of each ranking
(ties counted as half) is averaged over queries. The command line and the
service both call these functions, so their numbers cannot drift apart.

    >>> queries = draw_queries(artist_ids, rng=np.random.default_rng(0))
    >>> result = mean_auc(embeddings, artist_ids, queries)
    >>> result.mean_auc, result.n_queries
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

# Queries ranked per block: bounds memory at chunk x n_songs float64 values.
_QUERY_CHUNK = 256


@dataclass(frozen=True)
class RetrievalScore:
    mean_auc: float
    n_queries: int
    n_songs: int


def draw_queries(artist_ids: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """One random track index per artist that has at least two tracks, sorted by artist id.

    Artists with a single track cannot be queries: they have nothing relevant.
    """
    artist_ids = np.asarray(artist_ids)
    order = np.argsort(artist_ids, kind="stable")
    uniq, starts, counts = np.unique(artist_ids[order], return_index=True, return_counts=True)
    eligible = counts >= 2
    offsets = (rng.random(int(eligible.sum())) * counts[eligible]).astype(np.int64)
    return order[starts[eligible] + offsets]


def squared_distances(queries: np.ndarray, songs: np.ndarray) -> np.ndarray:
    """Squared L2 distances, shape (n_queries, n_songs), in float64.

    Computed as |q|^2 + |s|^2 - 2 q.s; float64 keeps raw features (values in the
    thousands) from losing the small differences that decide a ranking.
    """
    q = np.asarray(queries, dtype=np.float64)
    s = np.asarray(songs, dtype=np.float64)
    d = (q * q).sum(1)[:, None] + (s * s).sum(1)[None, :] - 2.0 * (q @ s.T)
    return np.maximum(d, 0.0)


def auc_per_query(
    embeddings: np.ndarray, artist_ids: np.ndarray, queries: np.ndarray
) -> np.ndarray:
    """ROC AUC of each query's ranking of all other songs, shape (n_queries,).

    embeddings: (n_songs, dim); artist_ids: (n_songs,); queries: indices into songs.
    A query whose artist has no other song, or that has no other-artist song,
    has no defined AUC and gets NaN.
    """
    embeddings = np.asarray(embeddings)
    artist_ids = np.asarray(artist_ids)
    queries = np.asarray(queries, dtype=np.int64)
    aucs = np.empty(len(queries), dtype=np.float64)
    for start in range(0, len(queries), _QUERY_CHUNK):
        block = queries[start : start + _QUERY_CHUNK]
        aucs[start : start + len(block)] = _auc_block(embeddings, artist_ids, block)
    return aucs


def _auc_block(embeddings: np.ndarray, artist_ids: np.ndarray, block: np.ndarray) -> np.ndarray:
    dist = squared_distances(embeddings[block], embeddings)
    rows = np.arange(len(block))
    # The query itself is neither relevant nor irrelevant: pushing it to +inf puts it
    # last, which leaves the (mid)ranks of every other song unchanged.
    dist[rows, block] = np.inf
    relevant = artist_ids[None, :] == artist_ids[block][:, None]
    relevant[rows, block] = False
    n_pos = relevant.sum(1).astype(np.float64)
    n_neg = len(artist_ids) - 1 - n_pos
    ranks = rankdata(dist, method="average", axis=1)  # ascending distance, ties averaged
    rank_sum = np.where(relevant, ranks, 0.0).sum(1)
    # Mann-Whitney: pairs where a negative is closer than a positive (ties half).
    closer_negatives = rank_sum - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = 1.0 - closer_negatives / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def mean_auc(embeddings: np.ndarray, artist_ids: np.ndarray, queries: np.ndarray) -> RetrievalScore:
    """The paper's figure: AUC averaged over queries with a defined AUC."""
    aucs = auc_per_query(embeddings, artist_ids, queries)
    valid = ~np.isnan(aucs)
    return RetrievalScore(
        mean_auc=float(aucs[valid].mean()) if valid.any() else float("nan"),
        n_queries=int(valid.sum()),
        n_songs=int(len(artist_ids)),
    )
