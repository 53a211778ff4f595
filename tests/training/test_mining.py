"""Online miners against a brute-force enumeration of every triplet of a tiny batch."""

import itertools

import numpy as np
import pytest
import torch

from training.mining import ArtistBatches, mine_triplets

MARGIN = 1.0


@pytest.fixture
def batch():
    """4 artists x 3 tracks in 2-D, spread so that easy, semi-hard and hard triplets all occur."""
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(4), 3)
    points = rng.normal(size=(4, 2))[labels] * 1.2 + rng.normal(size=(12, 2)) * 0.7
    return torch.tensor(points, dtype=torch.float32), torch.tensor(labels)


def squared(points):
    p = points.double().numpy()
    return ((p[:, None, :] - p[None, :, :]) ** 2).sum(-1)


def every_triplet(labels):
    n = len(labels)
    for a, p, q in itertools.product(range(n), repeat=3):
        if a != p and labels[a] == labels[p] and labels[q] != labels[a]:
            yield a, p, q


def test_semihard_miner_returns_exactly_the_semihard_triplets(batch):
    points, labels = batch
    d = squared(points)
    expected = {
        (a, p, q)
        for a, p, q in every_triplet(labels.tolist())
        if 0 < d[a, q] - d[a, p] <= MARGIN  # farther than the positive, inside the margin
    }
    mined = mine_triplets(points, labels, kind="semihard", margin=MARGIN)
    got = {tuple(row) for row in mined.tolist()}
    assert 0 < len(expected) < len(list(every_triplet(labels.tolist())))
    assert got == expected


def test_batch_hard_miner_takes_each_anchors_farthest_positive_and_nearest_negative(batch):
    points, labels = batch
    d = squared(points)
    lab = labels.numpy()
    mined = mine_triplets(points, labels, kind="batch-hard", margin=MARGIN).numpy()
    assert sorted(mined[:, 0].tolist()) == list(range(len(lab)))  # one triplet per anchor
    for a, p, q in mined:
        assert a != p and lab[a] == lab[p] and lab[q] != lab[a]
        same = (lab == lab[a]) & (np.arange(len(lab)) != a)
        np.testing.assert_allclose(d[a, p], d[a][same].max(), rtol=1e-5)
        np.testing.assert_allclose(d[a, q], d[a][lab != lab[a]].min(), rtol=1e-5)


def test_unknown_miner_is_refused(batch):
    with pytest.raises(ValueError, match="miner must be one of"):
        mine_triplets(*batch, kind="hardest", margin=MARGIN)


def test_p_by_k_batches_hold_p_artists_with_up_to_k_distinct_tracks():
    artists = np.array([1, 1, 1, 1, 1, 2, 2, 3, 4, 4, 4, 5])  # artist 3 has one track
    batches = ArtistBatches(artists, artists_per_batch=3, tracks_per_artist=4)
    rng = np.random.default_rng(0)
    for _ in range(50):
        rows = batches.sample(rng=rng)
        assert len(set(rows.tolist())) == len(rows)
        chosen, counts = np.unique(artists[rows], return_counts=True)
        assert len(chosen) == 3 and 3 not in chosen
        for artist, count in zip(chosen, counts, strict=True):
            assert count == min(4, (artists == artist).sum())
