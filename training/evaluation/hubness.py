"""Hubness of a space under a scoring: how unevenly songs appear in others' top-k lists.

Each song's k-occurrence N_k is the number of other songs whose k nearest
(by the scoring, itself excluded) include it. A hub has a large N_k, an antihub
N_k = 0; a skewed N_k distribution means a few songs crowd everyone's lists.

    >>> h = hubness(vectors, scoring=Scoring("local-scaling"))
    >>> h.skewness, h.antihub_share, h.max_k_occurrence, h.coverage
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from training.evaluation.scoring import Neighbourhoods, Scoring, neighbourhoods_for, scored_blocks

TOP = 10  # the list length the service returns by default


@dataclass(frozen=True)
class Hubness:
    skewness: float  # of the k-occurrence distribution (population skewness, as scipy's default)
    antihub_share: float  # songs in no top-k list
    max_k_occurrence: int  # the largest hub's N_k
    coverage: float  # songs in at least one top-k list
    k: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def k_occurrence(
    vectors: np.ndarray,
    *,
    scoring: Scoring,
    k: int = TOP,
    stats: Neighbourhoods | None = None,
) -> np.ndarray:
    """(n,) how often each song is among the k best-scored of another song, blockwise."""
    vectors = np.asarray(vectors, dtype=np.float64)
    n = len(vectors)
    k = min(k, n - 1)
    if stats is None:
        stats = neighbourhoods_for(vectors, scoring=scoring)
    counts = np.zeros(n, dtype=np.int64)
    for block, values in scored_blocks(vectors, np.arange(n), scoring=scoring, stats=stats):
        values[np.arange(len(block)), block] = np.inf  # itself is not in its own list
        top = np.argpartition(values, k - 1, axis=1)[:, :k]
        counts += np.bincount(top.ravel(), minlength=n)
    return counts


def skewness(values: np.ndarray) -> float:
    """Population skewness m3 / m2^1.5 (0 for a constant sequence)."""
    x = np.asarray(values, dtype=np.float64)
    centred = x - x.mean()
    m2 = (centred**2).mean()
    return 0.0 if m2 == 0 else float((centred**3).mean() / m2**1.5)


def hubness(
    vectors: np.ndarray,
    *,
    scoring: Scoring,
    k: int = TOP,
    stats: Neighbourhoods | None = None,
) -> Hubness:
    """The hubness figures of these songs, each ranking all others."""
    if len(vectors) < 2:
        raise ValueError("hubness needs at least two songs")
    counts = k_occurrence(vectors, scoring=scoring, k=k, stats=stats)
    covered = float((counts > 0).mean())
    return Hubness(
        skewness=skewness(counts),
        antihub_share=1.0 - covered,
        max_k_occurrence=int(counts.max()),
        coverage=covered,
        k=min(k, len(vectors) - 1),
    )
