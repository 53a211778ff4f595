"""`musicsim train --method auto`: the candidate that generalises best to unseen artists.

Candidates (z-score only, LDA, NCA, the batch-hard mined network, the paper's
network) are fitted on part of the training artists and scored, under each
scoring, on the other training artists (the validation artists). Evaluation
artists are never read: selection works on a catalogue cut down to the
training artists before anything is fitted. The rule: highest validation mean
AUC, ties (within 1e-9) broken by mAP. The chosen configuration is then refitted
on all training artists (the paper's split, as `musicsim train` does), and the
bundle records the chosen scoring and every candidate's validation figures.

    >>> selection = select_candidates(catalogue, AutoConfig(seed=0, epochs=10))
    >>> selection.best.name, selection.best.scoring
    >>> run = refit(catalogue, selection)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from training.config import LinearTrainConfig, TrainConfig
from training.data.fma import Catalogue
from training.data.split import split_artists
from training.evaluation.metrics import all_queries, retrieval_scores
from training.evaluation.scoring import SCORINGS, Scoring
from training.evaluation.spaces import model_space
from training.experiments.compare import fit_run
from training.runs import TrainedRun

AUC_TIE = 1e-9


@dataclass(frozen=True)
class AutoConfig:
    seed: int = 0
    train_fraction: float = TrainConfig.train_fraction  # the paper's split of all artists
    validation_fraction: float = 0.25  # of the training artists, held out to choose
    epochs: int = 20  # per network candidate: small, so auto runs in minutes
    scorings: tuple[str, ...] = SCORINGS
    scoring_k: int = 10
    candidates: tuple[str, ...] = ("zscore", "lda", "nca", "batch-hard", "paper")
    nca_max_tracks: int = LinearTrainConfig.nca_max_tracks  # NCA's cost grows with its square

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in (0, 1), got {self.validation_fraction}"
            )
        unknown = sorted(set(self.candidates) - set(CANDIDATES))
        if unknown:
            raise ValueError(f"unknown candidate(s) {unknown}; allowed: {', '.join(CANDIDATES)}")
        for name in self.scorings:
            Scoring(name, k=self.scoring_k)  # ValueError naming the allowed values
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")


CANDIDATES = ("zscore", "lda", "nca", "batch-hard", "paper")


def candidate_config(
    name: str, *, seed: int, train_fraction: float, epochs: int, nca_max_tracks: int = 3000
) -> TrainConfig | LinearTrainConfig:
    """One candidate's run configuration (the repository's configs/ with `epochs` epochs)."""
    if name in ("zscore", "lda", "nca"):
        return LinearTrainConfig(
            method=name, seed=seed, train_fraction=train_fraction, nca_max_tracks=nca_max_tracks
        )
    if name == "batch-hard":
        return TrainConfig(
            triplets="batch-hard",
            artists_per_batch=32,
            tracks_per_artist=4,
            epochs=epochs,
            seed=seed,
            train_fraction=train_fraction,
        )
    return TrainConfig(triplets="random", epochs=epochs, seed=seed, train_fraction=train_fraction)


@dataclass(frozen=True)
class Candidate:
    name: str
    scoring: str
    mean_auc: float
    mean_average_precision: float
    recall_at_10: float
    ndcg_at_10: float

    def key(self) -> tuple[float, float]:
        return (round(self.mean_auc / AUC_TIE) * AUC_TIE, self.mean_average_precision)


@dataclass
class Selection:
    best: Candidate
    candidates: list[Candidate]
    config: AutoConfig
    training_artists: np.ndarray  # the artists selection was allowed to read
    validation_artists: np.ndarray
    runs: dict[str, TrainedRun] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "rule": "highest validation mean AUC; ties (1e-9) by mAP",
            "config": dataclasses.asdict(self.config),
            "best": dataclasses.asdict(self.best),
            "candidates": [dataclasses.asdict(c) for c in self.candidates],
            "n_training_artists": int(len(self.training_artists)),
            "validation_artists": self.validation_artists.tolist(),
        }


def training_catalogue(catalogue: Catalogue, *, artists: np.ndarray) -> Catalogue:
    """The catalogue cut down to these artists' songs (nothing else can be read)."""
    keep = np.isin(catalogue.artist_ids, artists)
    return dataclasses.replace(
        catalogue, features=catalogue.features[keep], tracks=catalogue.tracks.iloc[keep]
    )


def select_candidates(catalogue: Catalogue, config: AutoConfig) -> Selection:
    """Fit every candidate on training artists, score each x scoring on validation artists."""
    split = split_artists(
        catalogue.artist_ids, train_fraction=config.train_fraction, seed=config.seed
    )
    known = training_catalogue(catalogue, artists=split.train)
    # Inside the training artists, the same split function draws the validation artists.
    inner_fraction = 1.0 - config.validation_fraction
    inner = split_artists(known.artist_ids, train_fraction=inner_fraction, seed=config.seed)
    held_out = inner.eval_mask(known.artist_ids)
    features, artists = known.features[held_out], known.artist_ids[held_out]
    queries = all_queries(artists)
    candidates, runs = [], {}
    for name in config.candidates:
        run_config = candidate_config(
            name,
            seed=config.seed,
            train_fraction=inner_fraction,
            epochs=config.epochs,
            nca_max_tracks=config.nca_max_tracks,
        )
        run = fit_run(known, run_config)
        runs[name] = run
        vectors = model_space(run.model, run.zscore)(features)
        for scoring_name in config.scorings:
            scoring = Scoring(scoring_name, k=config.scoring_k)
            score = retrieval_scores(vectors, artists, queries, k=10, scoring=scoring)
            candidates.append(
                Candidate(
                    name,
                    scoring_name,
                    score.mean_auc,
                    score.mean_average_precision,
                    score.recall_at_k,
                    score.ndcg_at_k,
                )
            )
    best = max(candidates, key=Candidate.key)
    return Selection(best, candidates, config, split.train, inner.eval, runs)


def refit(catalogue: Catalogue, selection: Selection) -> TrainedRun:
    """The chosen configuration fitted on all training artists of the paper's split."""
    config = selection.config
    run_config = candidate_config(
        selection.best.name,
        seed=config.seed,
        train_fraction=config.train_fraction,
        epochs=config.epochs,
        nca_max_tracks=config.nca_max_tracks,
    )
    return fit_run(catalogue, run_config)


def chosen_scoring(selection: Selection) -> Scoring:
    return Scoring(selection.best.scoring, k=selection.config.scoring_k)
