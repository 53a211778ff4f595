"""Hubness figures against a hand-built k-occurrence count and scipy's skewness."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import skew

from training.evaluation.hubness import hubness, k_occurrence, skewness
from training.evaluation.scoring import Scoring


def hand_counted_k_occurrence(scores: np.ndarray, k: int) -> np.ndarray:
    counts = np.zeros(len(scores), dtype=np.int64)
    for row in range(len(scores)):
        order = [j for j in np.argsort(scores[row], kind="stable") if j != row]
        for j in order[:k]:
            counts[j] += 1
    return counts


def hubby_points(seed: int, n: int = 80) -> np.ndarray:
    # High-dimensional Gaussian data: the classic setting where hubs appear.
    return np.random.default_rng(seed).normal(size=(n, 40))


@pytest.mark.parametrize("seed", range(3))
def test_k_occurrence_matches_a_hand_built_count(seed):
    points = hubby_points(seed)
    got = k_occurrence(points, scoring=Scoring(), k=10)
    np.testing.assert_array_equal(got, hand_counted_k_occurrence(cdist(points, points), 10))


def test_skewness_is_scipys_of_the_hand_built_count():
    points = hubby_points(5)
    counts = hand_counted_k_occurrence(cdist(points, points), 10)
    h = hubness(points, scoring=Scoring(), k=10)
    assert h.skewness == pytest.approx(skew(counts), abs=1e-12)
    assert h.skewness > 0.3  # the data above does have hubs: the figure is not vacuous
    assert h.max_k_occurrence == counts.max()
    assert h.antihub_share == pytest.approx((counts == 0).mean())
    assert h.coverage == pytest.approx((counts > 0).mean())


def test_skewness_of_a_constant_sequence_is_zero():
    assert skewness(np.full(5, 3)) == 0.0
    assert skewness(np.array([0, 0, 0, 9])) == pytest.approx(skew([0, 0, 0, 9]))


def test_local_scaling_lowers_the_hubness_of_uneven_density():
    rng = np.random.default_rng(0)
    # A dense cluster inside a sparse cloud: its songs are everyone's neighbours under l2.
    points = np.concatenate([rng.normal(size=(40, 10)) * 0.2, rng.normal(size=(200, 10)) * 2])
    l2 = hubness(points, scoring=Scoring())
    ls = hubness(points, scoring=Scoring("local-scaling"))
    assert ls.skewness < l2.skewness
