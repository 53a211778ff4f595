"""A finished run (model, z-score, split, curves) and the artist split every method shares.

>>> split = split_for(catalogue.artist_ids, config)   # evaluation artists are never trained on
>>> run = TrainedRun(model, zscore, split, config)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from training.config import LinearTrainConfig, TrainConfig
from training.data.split import (
    ArtistSplit,
    ZScore,
    hold_out_validation,
    limit_training_artists,
    split_artists,
)
from training.model import Embedder


@dataclass
class TrainedRun:
    model: Embedder  # a TripletMLP, or a LinearProjection from training/linear.py
    zscore: ZScore
    split: ArtistSplit
    config: TrainConfig | LinearTrainConfig
    losses: list[float] = field(default_factory=list)  # mean triplet loss per epoch
    n_genre_fallbacks: int = 0  # genre triplets that fell back to a random negative
    # (epoch, validation mean AUC) at each check; empty without a validation split.
    validation: list[tuple[int, float]] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch whose weights were kept (early stopping)


EpochCallback = Callable[[int, float], None]


def split_for(artist_ids: np.ndarray, config: TrainConfig | LinearTrainConfig) -> ArtistSplit:
    """The run's artists: the paper's split, then the optional size limit and validation set.

    Takes any config with train_fraction, seed, train_artists and validation_fraction
    (the linear metrics share it), so every method sees the same evaluation artists.
    """
    split = split_artists(artist_ids, train_fraction=config.train_fraction, seed=config.seed)
    if config.train_artists is not None:
        split = limit_training_artists(split, n_artists=config.train_artists, seed=config.seed)
    if config.validation_fraction:
        split = hold_out_validation(split, fraction=config.validation_fraction, seed=config.seed)
    return split
