"""Reproducing the paper's Table 1: raw, z-scored and both triplet variants on one split.

>>> table = reproduce_table1(catalogue, base=TrainConfig(seed=0))
>>> [(r.space, r.mean_auc) for r in table.rows]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from training.config import TrainConfig
from training.data.fma import Catalogue
from training.data.split import ArtistSplit, ZScore
from training.evaluation.scoring import Scoring
from training.evaluation.spaces import (
    SpaceScore,
    baseline_spaces,
    evaluate_on_split,
    evaluate_spaces,
    model_space,
)
from training.model import Embedder
from training.runs import EpochCallback, TrainedRun
from training.train import train_on_catalogue

# Table 1 of the paper (full FMA, 2,529 rankings of 25,290 songs).
PAPER_TABLE1: dict[str, float] = {
    "raw": 0.800,
    "zscore": 0.825,
    "triplet-random": 0.900,
    "triplet-genre": 0.883,
}


@dataclass
class Table1:
    rows: list[SpaceScore]
    runs: dict[str, TrainedRun]

    @property
    def n_songs(self) -> int:
        return self.rows[0].n_songs

    def as_json(self) -> dict:
        return {"rows": [r.as_dict() for r in self.rows], "n_songs": self.n_songs}


class Trained(Protocol):
    """What evaluation needs of a model: a fresh TrainedRun and a loaded Bundle both have it."""

    model: Embedder
    zscore: ZScore
    split: ArtistSplit


def evaluate_run(
    catalogue: Catalogue,
    run: Trained,
    *,
    seed: int,
    every_track: bool = False,
    spaces: tuple[str, ...] = ("raw", "zscore", "model"),
    scorings: Sequence[Scoring] = (Scoring(),),
) -> list[SpaceScore]:
    """raw, zscore and the run's model (or the `spaces` named) on its evaluation artists."""
    return evaluate_on_split(
        catalogue.features,
        catalogue.artist_ids,
        split=run.split,
        model=run.model,
        zscore=run.zscore,
        seed=seed,
        every_track=every_track,
        spaces=spaces,
        scorings=scorings,
    )


def reproduce_table1(
    catalogue: Catalogue,
    *,
    base: TrainConfig,
    on_epoch: dict[str, EpochCallback] | None = None,
    scorings: Sequence[Scoring] = (Scoring(),),
) -> Table1:
    """Train random and genre triplet models on the same split; score all four spaces."""
    runs = {}
    for kind in ("random", "genre"):
        config = dataclasses.replace(base, triplets=kind)
        callback = (on_epoch or {}).get(kind)
        runs[f"triplet-{kind}"] = train_on_catalogue(catalogue, config, on_epoch=callback)
    first = runs["triplet-random"]
    mask = first.split.eval_mask(catalogue.artist_ids)
    spaces = baseline_spaces(first.zscore)
    for name, run in runs.items():
        spaces[name] = model_space(run.model, run.zscore)
    rows = evaluate_spaces(
        catalogue.features[mask],
        catalogue.artist_ids[mask],
        spaces=spaces,
        seed=base.seed,
        scorings=scorings,
    )
    return Table1(rows=rows, runs=runs)
