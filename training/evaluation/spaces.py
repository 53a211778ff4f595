"""The paper's evaluation: artist-retrieval mean AUC of several spaces on the same queries.

Queries (one random track per evaluation artist, or with `all_queries` every
evaluation track whose artist has another) are drawn once per seed and shared by
every space, so rows of one table compare like with like. Each row holds the
paper's mean AUC and, from the same rankings, mAP, recall@10 and nDCG@10.

    >>> rows = evaluate_spaces(features, artist_ids, spaces=standard_spaces(bundle), seed=0)
    >>> [(r.space, r.mean_auc) for r in rows]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from training.data.split import ArtistSplit, ZScore
from training.evaluation.hubness import hubness
from training.evaluation.metrics import all_queries, draw_queries, retrieval_scores
from training.evaluation.scoring import Scoring, neighbourhoods_for
from training.model import Embedder, embed

# A space maps raw (n, 518) features to the vectors whose L2 distances rank songs.
Space = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SpaceScore:
    space: str
    mean_auc: float
    n_queries: int
    n_songs: int
    mean_average_precision: float = float("nan")
    recall_at_10: float = float("nan")
    ndcg_at_10: float = float("nan")
    scoring: str = "l2"
    # Hubness of the evaluated songs' top-10 lists under the scoring (training.evaluation.hubness)
    hubness_skewness: float = float("nan")
    antihub_share: float = float("nan")
    max_k_occurrence: int = 0
    coverage: float = float("nan")

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "space": self.space,
            "scoring": self.scoring,
            "mean_auc": self.mean_auc,
            "n_queries": self.n_queries,
            "mean_average_precision": self.mean_average_precision,
            "recall_at_10": self.recall_at_10,
            "ndcg_at_10": self.ndcg_at_10,
            "hubness_skewness": self.hubness_skewness,
            "antihub_share": self.antihub_share,
            "max_k_occurrence": self.max_k_occurrence,
            "coverage": self.coverage,
        }


def baseline_spaces(zscore: ZScore) -> dict[str, Space]:
    """The paper's two baselines: L2 on raw and on z-scored features."""
    return {"raw": lambda x: np.asarray(x, dtype=np.float32), "zscore": zscore.apply}


def model_space(model: Embedder, zscore: ZScore) -> Space:
    """The learned space: z-score with the training statistics, then the network."""
    return lambda x: embed(model, zscore.apply(x))


def standard_spaces(model: Embedder, zscore: ZScore) -> dict[str, Space]:
    """raw, zscore and model: what `musicsim evaluate` and POST /evaluate compare."""
    return {**baseline_spaces(zscore), "model": model_space(model, zscore)}


def evaluate_spaces(
    features: np.ndarray,
    artist_ids: np.ndarray,
    *,
    spaces: dict[str, Space],
    seed: int,
    every_track: bool = False,
    scorings: Sequence[Scoring] = (Scoring(),),
) -> list[SpaceScore]:
    """Retrieval scores and hubness of each space under each scoring, over the given songs.

    every_track: every track with a same-artist track is a query, not one per artist.
    Rows come space by space, each space's scorings in the order given.
    """
    if every_track:
        queries = all_queries(artist_ids)
    else:
        queries = draw_queries(artist_ids, rng=np.random.default_rng(seed))
    if len(queries) == 0:
        raise ValueError("no artist has two songs: nothing to evaluate")
    rows = []
    for name, space in spaces.items():
        vectors = space(features)
        for scoring in scorings:
            rows.append(score_space(name, vectors, artist_ids, queries, scoring=scoring))
    return rows


def score_space(
    name: str, vectors: np.ndarray, artist_ids: np.ndarray, queries: np.ndarray, *, scoring: Scoring
) -> SpaceScore:
    """One row: the retrieval metrics and hubness of one space under one scoring."""
    score = retrieval_scores(vectors, artist_ids, queries, k=10, scoring=scoring)
    hubs = hubness(
        vectors, scoring=scoring, k=10, stats=neighbourhoods_for(vectors, scoring=scoring)
    )
    return SpaceScore(
        name,
        score.mean_auc,
        score.n_queries,
        score.n_songs,
        mean_average_precision=score.mean_average_precision,
        recall_at_10=score.recall_at_k,
        ndcg_at_10=score.ndcg_at_k,
        scoring=scoring.name,
        hubness_skewness=hubs.skewness,
        antihub_share=hubs.antihub_share,
        max_k_occurrence=hubs.max_k_occurrence,
        coverage=hubs.coverage,
    )


def evaluate_on_split(
    features: np.ndarray,
    artist_ids: np.ndarray,
    *,
    split: ArtistSplit,
    model: Embedder,
    zscore: ZScore,
    seed: int,
    spaces: tuple[str, ...] = ("raw", "zscore", "model"),
    every_track: bool = False,
    scorings: Sequence[Scoring] = (Scoring(),),
) -> list[SpaceScore]:
    """The paper's evaluation of a trained model: its evaluation artists' songs only.

    The one path behind `musicsim evaluate`, `musicsim train` and POST /evaluate.
    """
    mask = split.eval_mask(artist_ids)
    available = standard_spaces(model, zscore)
    chosen = {name: available[name] for name in spaces}
    return evaluate_spaces(
        features[mask],
        artist_ids[mask],
        spaces=chosen,
        seed=seed,
        every_track=every_track,
        scorings=scorings,
    )
