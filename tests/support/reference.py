"""Brute-force references that tests compare the product's fast paths with.

Written the slow, obvious way on purpose (explicit differences, explicit pair
counts), sharing no code with `training.evaluation.metrics` or the indexes.
"""

from __future__ import annotations

import numpy as np


def pair_counting_auc(
    features: np.ndarray, artist_ids: np.ndarray, queries: np.ndarray | None = None
) -> float:
    """Mean over queries of P(a same-artist song is closer than an other-artist song).

    Ties count half. Queries default to every song whose artist has another song.
    """
    x = np.asarray(features, dtype=np.float64)
    artist_ids = np.asarray(artist_ids)
    if queries is None:
        queries = [q for q in range(len(x)) if (artist_ids == artist_ids[q]).sum() >= 2]
    aucs = []
    for q in queries:
        distances = np.sqrt(((x - x[q]) ** 2).sum(axis=1))
        others = np.arange(len(x)) != q
        positives = distances[others & (artist_ids == artist_ids[q])]
        negatives = distances[others & (artist_ids != artist_ids[q])]
        if len(positives) == 0 or len(negatives) == 0:
            continue
        wins = (positives[:, None] < negatives[None, :]).sum()
        ties = (positives[:, None] == negatives[None, :]).sum()
        aucs.append((wins + 0.5 * ties) / (len(positives) * len(negatives)))
    return float(np.mean(aucs))


def nearest_by_brute_force(
    vectors: np.ndarray, query: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(row numbers, L2 distances) of the k rows nearest to `query`, nearest first."""
    distances = np.sqrt(((np.asarray(vectors, np.float64) - query) ** 2).sum(axis=1))
    order = np.argsort(distances, kind="stable")[:k]
    return order, distances[order]
