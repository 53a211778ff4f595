"""Linear metrics: the z-score-only projection (LDA and NCA are covered in test_runs.py)."""

import numpy as np

from training.config import LinearTrainConfig
from training.data.fma import load_catalogue
from training.linear import fit_linear_on_catalogue
from training.model import embed


def test_the_zscore_method_embeds_songs_as_their_z_scored_features(small_catalogue_dir):
    catalogue = load_catalogue(data_dir=small_catalogue_dir)
    run = fit_linear_on_catalogue(catalogue, LinearTrainConfig(method="zscore"))
    train = np.isin(catalogue.artist_ids, run.split.train)
    x = catalogue.features.astype(np.float64)
    # numpy's population std over the training songs only: evaluation artists never count
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    expected = (x[:50] - mean) / np.where(std < 1e-8, 1.0, std)
    embedded = embed(run.model, run.zscore.apply(catalogue.features[:50]))
    assert embedded.shape == (50, catalogue.features.shape[1])
    np.testing.assert_allclose(embedded, expected, rtol=1e-3, atol=1e-3)
