"""Classical metric learning: a linear projection of the z-scored features (LDA, NCA).

A baseline for the triplet network and a fallback when there are few training
artists, where a 518-wide MLP can overfit and a linear metric cannot by much.
The result is a `LinearProjection` in the same bundle format as the MLP, so the
service serves either.

- "lda": scikit-learn's LinearDiscriminantAnalysis with artists as classes, the
  eigen solver and Ledoit-Wolf shrinkage of the within-artist covariance; the
  first `embedding_dim` discriminant directions.
- "zscore": the identity: songs compared by z-scored L2, nothing learned. Served
  like any bundle; the choice for a library with too few labelled artists.
- "nca": NeighborhoodComponentsAnalysis. Each of its iterations is O(n^2) in the
  tracks it sees, so it fits on at most `nca_max_tracks` training tracks (drawn
  by `seed`) for at most `nca_max_iter` iterations.

>>> run = fit_linear_on_catalogue(catalogue, LinearTrainConfig(method="lda", embedding_dim=64))
>>> run.model  # LinearProjection
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from training.config import LinearTrainConfig
from training.data.fma import Catalogue
from training.data.split import ZScore
from training.model import LinearConfig, LinearProjection
from training.runs import TrainedRun, split_for


def fit_linear_on_catalogue(catalogue: Catalogue, config: LinearTrainConfig) -> TrainedRun:
    """The paper's split and z-score, then a linear metric fitted on the training tracks."""
    split = split_for(catalogue.artist_ids, config)
    train = split.train_mask(catalogue.artist_ids)
    zscore = ZScore.fit(catalogue.features[train])
    x = zscore.apply(catalogue.features[train])
    weights = fit_projection(x, catalogue.artist_ids[train], config)
    model = LinearProjection(LinearConfig(n_features=x.shape[1], embedding_dim=len(weights)))
    with torch.no_grad():
        model.projection.weight.copy_(torch.from_numpy(weights))
    model.eval()
    return TrainedRun(model, zscore, split, config)


def fit_projection(x: np.ndarray, artist_ids: np.ndarray, config: LinearTrainConfig) -> np.ndarray:
    """(embedding_dim, n_features) float32 matrix W: songs are compared by |W x - W y|."""
    if config.method == "zscore":
        return np.eye(x.shape[1], dtype=np.float32)
    if config.method == "lda":
        return _fit_lda(x, artist_ids, config)
    return _fit_nca(x, artist_ids, config)


def _fit_lda(x: np.ndarray, artist_ids: np.ndarray, config: LinearTrainConfig) -> np.ndarray:
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    n_classes = len(np.unique(artist_ids))
    if n_classes < 2:
        raise ValueError("LDA needs at least two training artists")
    dim = min(config.embedding_dim, n_classes - 1, x.shape[1])
    lda = LinearDiscriminantAnalysis(
        solver="eigen",
        shrinkage="auto" if config.shrinkage is None else config.shrinkage,
        n_components=dim,
    )
    lda.fit(x, artist_ids)
    # The eigen solver's transform is x @ scalings_, truncated to the leading directions.
    return np.ascontiguousarray(lda.scalings_[:, :dim].T, dtype=np.float32)


def _fit_nca(x: np.ndarray, artist_ids: np.ndarray, config: LinearTrainConfig) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neighbors import NeighborhoodComponentsAnalysis

    rng = np.random.default_rng([config.seed, 3])
    rows = np.arange(len(x))
    if len(rows) > config.nca_max_tracks:
        rows = np.sort(rng.choice(rows, size=config.nca_max_tracks, replace=False))
    # Its PCA start needs no more components than songs: a small library has few.
    dim = min(config.embedding_dim, x.shape[1], len(rows))
    nca = NeighborhoodComponentsAnalysis(
        n_components=dim, init="pca", max_iter=config.nca_max_iter, random_state=config.seed
    )
    with warnings.catch_warnings():
        # Capped iterations are the documented budget, not a failure.
        warnings.simplefilter("ignore", ConvergenceWarning)
        nca.fit(x[rows], artist_ids[rows])
    return np.ascontiguousarray(nca.components_, dtype=np.float32)
