"""Triplet sampler invariants and the artist split."""

import numpy as np
import pytest

from training.data.split import ZScore, split_artists
from training.sampling import TripletSampler


@pytest.fixture
def labelled_tracks():
    rng = np.random.default_rng(0)
    artists = rng.integers(0, 40, size=600)
    genre_of_artist = np.array(["Rock", "Pop", "Jazz", None] * 10, dtype=object)
    genres = genre_of_artist[artists]
    return artists, genres


def test_random_triplets_pair_an_artist_with_another(labelled_tracks):
    artists, _ = labelled_tracks
    t = TripletSampler(artists, kind="random").sample(5000, rng=np.random.default_rng(1))
    assert t.shape == (5000, 3)
    a, p, n = t.T
    assert (a != p).all()
    assert (artists[a] == artists[p]).all()
    assert (artists[a] != artists[n]).all()


def test_genre_triplets_draw_negatives_from_the_anchors_genre(labelled_tracks):
    artists, genres = labelled_tracks
    sampler = TripletSampler(artists, genres=genres, kind="genre")
    a, p, n = sampler.sample(5000, rng=np.random.default_rng(2)).T
    assert (artists[a] == artists[p]).all() and (a != p).all()
    assert (artists[a] != artists[n]).all()
    with_genre = np.array([g is not None for g in genres[a]])
    assert (genres[a][with_genre] == genres[n][with_genre]).all()
    # Anchors without a genre fall back to random negatives, and are counted.
    assert sampler.n_fallbacks == int((~with_genre).sum())


def test_a_genre_with_one_artist_falls_back_to_random_negatives():
    artists = np.array([0, 0, 1, 1, 2, 2])
    genres = np.array(["Solo", "Solo", "Pair", "Pair", "Pair", "Pair"], dtype=object)
    sampler = TripletSampler(artists, genres=genres, kind="genre")
    a, _, n = sampler.sample(400, rng=np.random.default_rng(3)).T
    solo = artists[a] == 0
    assert (artists[n][solo] != 0).all() and sampler.n_fallbacks == int(solo.sum())
    assert (genres[n][~solo] == "Pair").all()


def test_positives_cover_every_other_track_of_the_artist():
    artists = np.array([0, 0, 0, 0, 1])
    a, p, _ = TripletSampler(artists).sample(4000, rng=np.random.default_rng(4)).T
    assert set(p[a == 0].tolist()) == {1, 2, 3}


def test_sampling_is_reproducible_with_a_seed(labelled_tracks):
    artists, _ = labelled_tracks
    sampler = TripletSampler(artists)
    first = sampler.sample(100, rng=np.random.default_rng(5))
    assert (first == sampler.sample(100, rng=np.random.default_rng(5))).all()


def test_split_shares_no_artist_and_drops_single_track_artists():
    artists = np.repeat(np.arange(100), 2)
    artists = np.concatenate([artists, np.arange(100, 130)])  # 30 single-track artists
    split = split_artists(artists, train_fraction=0.7, seed=0)
    assert np.intersect1d(split.train, split.eval).size == 0
    assert len(split.train) == 70 and len(split.eval) == 30
    assert set(split.train) | set(split.eval) == set(range(100))


def test_split_depends_on_the_seed():
    artists = np.repeat(np.arange(50), 3)
    one, two = (split_artists(artists, train_fraction=0.7, seed=s) for s in (0, 1))
    assert set(one.eval) != set(two.eval)


def test_zscore_standardises_and_survives_constant_columns():
    x = np.random.default_rng(0).normal(5.0, 3.0, size=(1000, 3))
    x[:, 2] = 7.0
    z = ZScore.fit(x).apply(x)
    np.testing.assert_allclose(z[:, :2].mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(z[:, :2].std(0), 1, atol=1e-4)
    assert (z[:, 2] == 0).all()
