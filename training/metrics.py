"""Artist-retrieval metrics of the paper, as pure numpy functions.

One query track per evaluation artist ranks every other evaluation track by L2
distance; the artist's other tracks are relevant. The ROC AUC of each ranking
(ties counted as half) is averaged over queries. Beyond the paper, the same
rankings give average precision, recall@k and nDCG@k (binary relevance; songs at
equal distance are ordered by index for these three). The command line and the
service both call these functions, so their numbers cannot drift apart.

    >>> queries = draw_queries(artist_ids, rng=np.random.default_rng(0))
    >>> result = mean_auc(embeddings, artist_ids, queries)
    >>> result.mean_auc, result.n_queries
    >>> retrieval_scores(embeddings, artist_ids, all_queries(artist_ids)).mean_average_precision
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


def all_queries(artist_ids: np.ndarray) -> np.ndarray:
    """Every track whose artist has another track: each ranking counted, none drawn."""
    artist_ids = np.asarray(artist_ids)
    _, inverse, counts = np.unique(artist_ids, return_inverse=True, return_counts=True)
    return np.flatnonzero(counts[inverse] >= 2)


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
    return per_query_scores(embeddings, artist_ids, queries, ranked=False)["auc"]


def per_query_scores(
    embeddings: np.ndarray,
    artist_ids: np.ndarray,
    queries: np.ndarray,
    *,
    k: int = 10,
    ranked: bool = True,
) -> dict[str, np.ndarray]:
    """Per-query "auc", and with `ranked` also "ap", "recall" (@k) and "ndcg" (@k).

    Each value has shape (n_queries,); NaN where the metric is undefined (no
    relevant or no irrelevant song).
    """
    embeddings = np.asarray(embeddings)
    artist_ids = np.asarray(artist_ids)
    queries = np.asarray(queries, dtype=np.int64)
    names = ("auc", "ap", "recall", "ndcg") if ranked else ("auc",)
    out = {name: np.empty(len(queries), dtype=np.float64) for name in names}
    for start in range(0, len(queries), _QUERY_CHUNK):
        block = queries[start : start + _QUERY_CHUNK]
        for name, values in _score_block(embeddings, artist_ids, block, k, ranked).items():
            out[name][start : start + len(block)] = values
    return out


def _score_block(
    embeddings: np.ndarray, artist_ids: np.ndarray, block: np.ndarray, k: int, ranked: bool
) -> dict[str, np.ndarray]:
    dist = squared_distances(embeddings[block], embeddings)
    rows = np.arange(len(block))
    # The query itself is neither relevant nor irrelevant: pushing it to +inf puts it
    # last, which leaves the (mid)ranks of every other song unchanged.
    dist[rows, block] = np.inf
    relevant = artist_ids[None, :] == artist_ids[block][:, None]
    relevant[rows, block] = False
    n_pos = relevant.sum(1).astype(np.float64)
    n_neg = len(artist_ids) - 1 - n_pos
    undefined = (n_pos == 0) | (n_neg == 0)
    scores = {"auc": _auc(dist, relevant, n_pos, n_neg)}
    if ranked:
        order = np.argsort(dist, axis=1, kind="stable")
        hits = np.take_along_axis(relevant, order, axis=1)[:, : len(artist_ids) - 1]
        scores |= _ranked_scores(hits, n_pos, k)
    for values in scores.values():
        values[undefined] = np.nan
    return scores


def _auc(dist: np.ndarray, relevant: np.ndarray, n_pos: np.ndarray, n_neg: np.ndarray):
    ranks = rankdata(dist, method="average", axis=1)  # ascending distance, ties averaged
    rank_sum = np.where(relevant, ranks, 0.0).sum(1)
    # Mann-Whitney: pairs where a negative is closer than a positive (ties half).
    closer_negatives = rank_sum - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - closer_negatives / (n_pos * n_neg)


def _ranked_scores(hits: np.ndarray, n_pos: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """hits: (n_queries, n_songs - 1) bool, relevance of each song in ranked order."""
    positions = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    found = np.cumsum(hits, axis=1)
    top = hits[:, :k]
    discounts = 1.0 / np.log2(positions[: top.shape[1]] + 1.0)
    # The ideal ranking puts min(n_pos, k) relevant songs first.
    ideal = np.cumsum(discounts)[np.minimum(n_pos, top.shape[1]).astype(np.int64) - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            # Precision at each relevant song's position, averaged over relevant songs.
            "ap": np.where(hits, found / positions, 0.0).sum(1) / n_pos,
            "recall": top.sum(1) / n_pos,
            "ndcg": (top * discounts).sum(1) / ideal,
        }


def mean_auc(embeddings: np.ndarray, artist_ids: np.ndarray, queries: np.ndarray) -> RetrievalScore:
    """The paper's figure: AUC averaged over queries with a defined AUC."""
    aucs = auc_per_query(embeddings, artist_ids, queries)
    valid = ~np.isnan(aucs)
    return RetrievalScore(
        mean_auc=float(aucs[valid].mean()) if valid.any() else float("nan"),
        n_queries=int(valid.sum()),
        n_songs=int(len(artist_ids)),
    )


@dataclass(frozen=True)
class RetrievalScores:
    """Means over queries with defined metrics, for one space."""

    mean_auc: float
    mean_average_precision: float
    recall_at_k: float
    ndcg_at_k: float
    k: int
    n_queries: int
    n_songs: int


def retrieval_scores(
    embeddings: np.ndarray, artist_ids: np.ndarray, queries: np.ndarray, *, k: int = 10
) -> RetrievalScores:
    """Mean AUC, mAP, recall@k and nDCG@k of the same rankings."""
    per_query = per_query_scores(embeddings, artist_ids, queries, k=k)
    valid = ~np.isnan(per_query["auc"])

    def average(name: str) -> float:
        return float(per_query[name][valid].mean()) if valid.any() else float("nan")

    return RetrievalScores(
        mean_auc=average("auc"),
        mean_average_precision=average("ap"),
        recall_at_k=average("recall"),
        ndcg_at_k=average("ndcg"),
        k=k,
        n_queries=int(valid.sum()),
        n_songs=int(len(artist_ids)),
    )
