"""The paper's data protocol: artists split 70/30, z-score statistics from training tracks.

>>> split = split_artists(catalogue.artist_ids, train_fraction=0.7, seed=0)
>>> zscore = ZScore.fit(catalogue.features[split.train_mask(catalogue.artist_ids)])
>>> x = zscore.apply(catalogue.features)
>>> split = hold_out_validation(split, fraction=0.1, seed=0)  # early stopping, from train only
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# A column whose training std is below this is constant in practice; dividing by
# it would blow noise up, so it is scaled by 1 instead.
_MIN_STD = 1e-8


def multi_track_artists(artist_ids: np.ndarray) -> np.ndarray:
    """Sorted ids of artists with at least two tracks (an anchor needs a distinct positive)."""
    ids, counts = np.unique(np.asarray(artist_ids), return_counts=True)
    return ids[counts >= 2]


def _no_artists() -> np.ndarray:
    return np.empty(0, dtype=np.int64)


@dataclass(frozen=True)
class ArtistSplit:
    """Disjoint sorted artist ids: all tracks of `train` train, all of `eval` evaluate.

    `validation` (empty unless early stopping asks for it) is carved out of the
    training artists, never out of `eval`: it steers training, so it must not
    see the artists the final figures are measured on.
    """

    train: np.ndarray
    eval: np.ndarray
    validation: np.ndarray = field(default_factory=_no_artists)

    def validation_mask(self, artist_ids: np.ndarray) -> np.ndarray:
        return np.isin(artist_ids, self.validation)

    def train_mask(self, artist_ids: np.ndarray) -> np.ndarray:
        return np.isin(artist_ids, self.train)

    def eval_mask(self, artist_ids: np.ndarray) -> np.ndarray:
        return np.isin(artist_ids, self.eval)


def split_artists(artist_ids: np.ndarray, *, train_fraction: float, seed: int) -> ArtistSplit:
    """Drop single-track artists, then split the rest at random by artist."""
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    eligible = multi_track_artists(artist_ids)
    if len(eligible) < 2:
        raise ValueError(
            f"need at least two artists with two or more tracks, found {len(eligible)}"
        )
    shuffled = np.random.default_rng(seed).permutation(eligible)
    n_train = min(max(int(round(train_fraction * len(eligible))), 1), len(eligible) - 1)
    return ArtistSplit(train=np.sort(shuffled[:n_train]), eval=np.sort(shuffled[n_train:]))


def limit_training_artists(split: ArtistSplit, *, n_artists: int, seed: int) -> ArtistSplit:
    """Keep `n_artists` random training artists; evaluation artists are untouched.

    For sweeps over the catalogue size: every size is scored on the same evaluation artists.
    """
    if n_artists < 2:
        raise ValueError(f"need at least two training artists, got {n_artists}")
    if n_artists >= len(split.train):
        return split
    kept = np.random.default_rng([seed, 1]).choice(split.train, size=n_artists, replace=False)
    return ArtistSplit(train=np.sort(kept), eval=split.eval, validation=split.validation)


def hold_out_validation(split: ArtistSplit, *, fraction: float, seed: int) -> ArtistSplit:
    """Move a random `fraction` of the training artists into `validation`."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    n_validation = int(round(fraction * len(split.train)))
    if n_validation < 2 or len(split.train) - n_validation < 2:
        raise ValueError(
            f"a validation fraction of {fraction} of {len(split.train)} training artists "
            "leaves fewer than two artists on one side"
        )
    shuffled = np.random.default_rng([seed, 2]).permutation(split.train)
    return ArtistSplit(
        train=np.sort(shuffled[n_validation:]),
        eval=split.eval,
        validation=np.sort(shuffled[:n_validation]),
    )


@dataclass(frozen=True)
class ZScore:
    """Per-feature mean and std, float32 (n_features,)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> ZScore:
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError("z-score statistics need a 2-D array of at least two rows")
        std = x.std(axis=0)
        std[std < _MIN_STD] = 1.0
        return cls(mean=x.mean(axis=0).astype(np.float32), std=std.astype(np.float32))

    def apply(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, dtype=np.float32) - self.mean) / self.std).astype(np.float32)
