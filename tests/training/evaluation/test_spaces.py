"""Evaluation scores a trained model on its evaluation artists' songs, and only those."""

import numpy as np
import pytest
from reference import pair_counting_auc

from training.data.split import ArtistSplit, ZScore
from training.evaluation.spaces import evaluate_on_split

IDENTITY = ZScore(mean=np.zeros(2, np.float32), std=np.ones(2, np.float32))


def _evaluate(features, artist_ids, split, *, every_track=True, zscore=IDENTITY):
    return evaluate_on_split(
        features,
        artist_ids,
        split=split,
        model=None,  # only the baseline spaces are asked for
        zscore=zscore,
        seed=0,
        spaces=("raw", "zscore"),
        every_track=every_track,
    )


@pytest.mark.parametrize("every_track", [True, False])
def test_training_artists_songs_between_evaluation_songs_do_not_count(every_track):
    # Evaluation artists 1 and 2 are two tight pairs far apart: a perfect ranking.
    # Training artist 3 sits halfway inside each pair; counted, its songs would beat
    # every evaluation query's positive once and pull their mean AUC down to 3/4.
    features = np.array([[0, 0], [1, 0], [10, 0], [11, 0], [0.5, 0], [10.5, 0]], dtype=np.float32)
    artist_ids = np.array([1, 1, 2, 2, 3, 3])
    split = ArtistSplit(train=np.array([3]), eval=np.array([1, 2]))
    assert pair_counting_auc(features, artist_ids, queries=[0, 1, 2, 3]) == pytest.approx(0.75)
    for row in _evaluate(features, artist_ids, split, every_track=every_track):
        assert row.mean_auc == 1.0
        assert row.n_songs == 4 and row.n_queries == (4 if every_track else 2)


def test_the_mean_auc_equals_pair_counting_over_evaluation_songs_only():
    rng = np.random.default_rng(7)
    artist_ids = np.repeat(np.arange(40), rng.integers(2, 6, size=40))
    centres = rng.normal(size=(40, 2))
    features = (centres[artist_ids] + 0.8 * rng.normal(size=(len(artist_ids), 2))).astype(
        np.float32
    )
    split = ArtistSplit(train=np.arange(0, 40, 2), eval=np.arange(1, 40, 2))
    held = np.isin(artist_ids, split.eval)
    expected = pair_counting_auc(features[held], artist_ids[held])
    # The catalogue is mixed enough that counting every song would give another figure.
    assert abs(pair_counting_auc(features, artist_ids) - expected) > 1e-3
    zscore = ZScore.fit(features[~held])
    raw, scaled = _evaluate(features, artist_ids, split, zscore=zscore)
    assert raw.mean_auc == pytest.approx(expected, abs=1e-12)
    assert raw.n_songs == held.sum() and raw.n_queries == held.sum()
    assert scaled.mean_auc == pytest.approx(
        pair_counting_auc((features[held] - zscore.mean) / zscore.std, artist_ids[held]),
        abs=1e-12,
    )
