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
    >>> with stop_when(lambda: time.monotonic() > deadline):   # EvaluationStopped past it
    ...     retrieval_scores(embeddings, artist_ids, queries)

Memory is linear in the number of songs: queries are ranked a block of distance
rows at a time (at most _BLOCK_VALUES distances), and each query's metrics come
from one sort of its row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np

from training.evaluation.scoring import Scoring, neighbourhoods_for, scored_blocks

# Queries ranked per block: at most this many, and at most _BLOCK_VALUES distances.
_QUERY_CHUNK = 256
_BLOCK_VALUES = 4 * 2**20  # 32 MB of float64 per block, whatever the number of songs
_stop_check: ContextVar[Callable[[], bool] | None] = ContextVar("stop_check", default=None)


class EvaluationStopped(Exception):
    """The `stop_when` check asked to stop (a deadline passed, the client left)."""


@contextmanager
def stop_when(check: Callable[[], bool]) -> Iterator[None]:
    """Within this block, ranking stops between blocks of queries once `check()` is true."""
    token = _stop_check.set(check)
    try:
        yield
    finally:
        _stop_check.reset(token)


def _stop_if_asked() -> None:
    check = _stop_check.get()
    if check is not None and check():
        raise EvaluationStopped("the evaluation was stopped before it finished")


L2 = Scoring()


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
    return _squared_distances(q, s, (s * s).sum(1))


def _squared_distances(q: np.ndarray, s: np.ndarray, s_norms: np.ndarray) -> np.ndarray:
    d = (q * q).sum(1)[:, None] + s_norms[None, :] - 2.0 * (q @ s.T)
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
    scoring: Scoring = L2,
    query_chunk: int = _QUERY_CHUNK,
) -> dict[str, np.ndarray]:
    """Per-query "auc", and with `ranked` also "ap", "recall" (@k) and "ndcg" (@k).

    Songs are ranked by the scoring's score (training.evaluation.scoring), its
    radii and Gaussians taken over these songs. Each value has shape
    (n_queries,); NaN where the metric is undefined (no relevant or no
    irrelevant song). Queries are ranked `query_chunk` at a time, fewer when a
    block would exceed _BLOCK_VALUES distances.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)  # once, not per block
    _check_finite(embeddings)
    artist_ids = np.asarray(artist_ids)
    queries = np.asarray(queries, dtype=np.int64)
    names = ("auc", "ap", "recall", "ndcg") if ranked else ("auc",)
    out = {name: np.empty(len(queries), dtype=np.float64) for name in names}
    stats = neighbourhoods_for(embeddings, scoring=scoring) if len(queries) else None
    chunk = max(1, min(query_chunk, _BLOCK_VALUES // max(1, len(embeddings))))
    start = 0
    blocks = scored_blocks(embeddings, queries, scoring=scoring, stats=stats, rows_per_block=chunk)
    for block, dist in blocks:
        _stop_if_asked()
        if not np.isfinite(dist).all():  # finite vectors whose squares overflow float64
            raise ValueError("distances between these vectors are not finite (values too large)")
        for name, values in _score_block(dist, artist_ids, block, k, ranked).items():
            out[name][start : start + len(block)] = values
        start += len(block)
    return out


def _score_block(
    dist: np.ndarray,
    artist_ids: np.ndarray,
    block: np.ndarray,
    k: int,
    ranked: bool,
) -> dict[str, np.ndarray]:
    names = ("auc", "ap", "recall", "ndcg") if ranked else ("auc",)
    scores = {name: np.full(len(block), np.nan) for name in names}
    for row, query in enumerate(block):
        for name, value in _score_query(dist[row], artist_ids, int(query), k).items():
            if name in scores:
                scores[name][row] = value
    return scores


def _score_query(dist: np.ndarray, artist_ids: np.ndarray, query: int, k: int) -> dict[str, float]:
    """All metrics of one query's ranking, from one stable sort of its distance row.

    A relevant song's rank is its place in the stable sort (songs at the same
    distance listed by index), and the AUC counts closer irrelevant songs, ties
    as half (the Mann-Whitney U), from the runs of equal distance in the sorted
    row; memory is a few arrays of n_songs values.
    """
    relevant = np.flatnonzero(artist_ids == artist_ids[query])
    relevant = relevant[relevant != query]  # the query is neither relevant nor irrelevant
    n_pos, n_neg = len(relevant), len(artist_ids) - 1 - len(relevant)
    if n_pos == 0 or n_neg == 0:
        return {}
    dist = dist.copy()
    dist[query] = np.inf  # last of all: no other song's rank changes
    order = np.argsort(dist, kind="stable")
    d_sorted = dist[order]
    is_relevant = np.zeros(len(dist), dtype=bool)
    is_relevant[relevant] = True
    relevant_sorted = is_relevant[order]
    # Runs of equal distance in the sorted row: where each starts, how long, how many relevant.
    starts = np.flatnonzero(np.r_[True, d_sorted[1:] != d_sorted[:-1]])
    lengths = np.diff(np.r_[starts, len(dist)])
    relevant_in_run = np.add.reduceat(relevant_sorted.astype(np.int64), starts)
    relevant_before = np.cumsum(relevant_in_run) - relevant_in_run
    at = np.flatnonzero(relevant_sorted)  # relevant songs' places, ascending
    run = np.searchsorted(starts, at, side="right") - 1
    closer = starts[run]  # songs strictly closer
    tied = lengths[run]  # includes the song itself
    pos_closer, pos_tied = relevant_before[run], relevant_in_run[run]
    closer_negatives = (closer - pos_closer) + 0.5 * (tied - pos_tied)
    ranks = (at + 1).astype(np.float64)  # 1-based, ascending
    found = np.arange(1, n_pos + 1, dtype=np.float64)  # relevant songs up to each one
    in_top = ranks <= k
    discounts = 1.0 / np.log2(np.arange(1, min(n_pos, k) + 1) + 1.0)
    return {
        "auc": 1.0 - closer_negatives.sum() / (n_pos * n_neg),
        "ap": float((found / ranks).mean()),
        "recall": in_top.sum() / n_pos,
        "ndcg": float((1.0 / np.log2(ranks[in_top] + 1.0)).sum() / discounts.sum()),
    }


def _check_finite(embeddings: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if len(bad):
        raise ValueError(
            f"{len(bad)} song(s) have vectors that are not finite in this space "
            f"(first: row {int(bad[0])}; features too large for it?)"
        )


def mean_auc(
    embeddings: np.ndarray, artist_ids: np.ndarray, queries: np.ndarray, *, scoring: Scoring = L2
) -> RetrievalScore:
    """The paper's figure: AUC averaged over queries with a defined AUC."""
    aucs = per_query_scores(embeddings, artist_ids, queries, ranked=False, scoring=scoring)["auc"]
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
    embeddings: np.ndarray,
    artist_ids: np.ndarray,
    queries: np.ndarray,
    *,
    k: int = 10,
    scoring: Scoring = L2,
) -> RetrievalScores:
    """Mean AUC, mAP, recall@k and nDCG@k of the same rankings."""
    per_query = per_query_scores(embeddings, artist_ids, queries, k=k, scoring=scoring)
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
