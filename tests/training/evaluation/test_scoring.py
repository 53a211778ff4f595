"""Scorings against a direct O(n^2) implementation with scipy's distances and normal CDF."""

import faiss
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import norm

from training.evaluation.metrics import per_query_scores
from training.evaluation.scoring import (
    SCORINGS,
    Scoring,
    exact_distances,
    neighbourhoods,
    scores,
    scoring_asked,
)


def reference_scores(points: np.ndarray, name: str, k: int) -> np.ndarray:
    """The whole n x n matrix of scores, straight from the definitions (1 - MP for MP)."""
    d = cdist(points, points)
    n = len(points)
    others = ~np.eye(n, dtype=bool)
    off = d[others].reshape(n, n - 1)  # each song's distances to the others
    if name == "l2":
        return d
    if name == "local-scaling":
        r = np.sort(off, axis=1)[:, :k].mean(1)
        return d / np.sqrt(np.outer(r, r))
    mu, sd = off.mean(1), off.std(1)
    survive_row = norm.sf(d, loc=mu[:, None], scale=sd[:, None])
    survive_col = norm.sf(d, loc=mu[None, :], scale=sd[None, :])
    return 1.0 - survive_row * survive_col


def random_catalogue(seed: int, n: int = 60, dim: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Clusters of different spread: a dense one makes hubs, which the scorings re-rank.
    centres = rng.normal(size=(4, dim)) * 3
    which = rng.integers(0, 4, size=n)
    points = centres[which] + rng.normal(size=(n, dim)) * (0.3 + which[:, None])
    return points, rng.integers(0, 8, size=n)


@pytest.mark.parametrize("name", SCORINGS)
@pytest.mark.parametrize("seed", range(3))
def test_scores_rank_every_query_as_the_direct_definition(name, seed):
    points, _ = random_catalogue(seed)
    scoring = Scoring(name, k=5)
    stats = neighbourhoods(points, scoring=scoring)
    got = scores(cdist(points, points), scoring=scoring, queries=stats, songs=stats)
    expected = reference_scores(points, name, k=5)
    for row in range(len(points)):
        others = np.arange(len(points)) != row
        np.testing.assert_array_equal(
            np.argsort(got[row][others], kind="stable"),
            np.argsort(expected[row][others], kind="stable"),
        )


def test_radii_are_the_mean_distance_to_the_k_nearest_other_songs():
    points, _ = random_catalogue(7)
    stats = neighbourhoods(points, scoring=Scoring("local-scaling", k=4))
    d = cdist(points, points) + np.diag(np.full(len(points), np.inf))
    np.testing.assert_allclose(stats.radius, np.sort(d, axis=1)[:, :4].mean(1), rtol=1e-9)


def brute_force_auc(score_row: np.ndarray, artists: np.ndarray, query: int) -> float:
    others = np.arange(len(artists)) != query
    pos = score_row[others & (artists == artists[query])]
    neg = score_row[others & (artists != artists[query])]
    wins = sum(float(p < q) + 0.5 * float(p == q) for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("name", SCORINGS)
def test_evaluation_ranks_by_the_scoring(name):
    points, artists = random_catalogue(3, n=50)
    scoring = Scoring(name, k=5)
    queries = np.arange(len(points))
    got = per_query_scores(points, artists, queries, scoring=scoring, ranked=False)["auc"]
    expected_matrix = reference_scores(points, name, k=5)
    expected = [brute_force_auc(expected_matrix[q], artists, q) for q in queries]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)


def test_local_scaling_changes_the_ranking_it_is_tested_on():
    # Guards the tests above: on this catalogue the scorings really disagree with l2.
    points, artists = random_catalogue(3, n=50)
    l2 = per_query_scores(points, artists, np.arange(50), ranked=False)["auc"]
    ls = per_query_scores(
        points, artists, np.arange(50), ranked=False, scoring=Scoring("local-scaling", k=5)
    )["auc"]
    assert not np.allclose(l2, ls)


def test_mutual_proximity_fits_its_gaussians_to_a_sample_of_large_catalogues():
    points, _ = random_catalogue(1, n=300)
    stats = neighbourhoods(points, scoring=Scoring("mutual-proximity", sample=50))
    off = cdist(points, points)
    # A sample's mean is near the whole catalogue's, not equal to it.
    full_mean = (off.sum(1)) / (len(points) - 1)
    assert np.abs(stats.mean - full_mean).max() < 0.25 * full_mean.mean()


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"name": "cosine"}, "l2, local-scaling, mutual-proximity"),
        ({"k": 0}, "from 1 to 1000"),
        ({"k": 1001}, "from 1 to 1000"),
        ({"pool": 99}, "from 100 to 100000"),
        ({"k": 2.5}, "integer"),
    ],
)
def test_invalid_scorings_are_refused_naming_the_allowed_values(parameters, message):
    with pytest.raises(ValueError, match=message):
        Scoring(**parameters)


@pytest.mark.parametrize("name", ["local-scaling", "mutual-proximity"])
def test_the_pool_covers_ten_times_the_results_asked_for(name):
    assert Scoring(name, pool=100).pool_for(5) == 100
    assert Scoring(name, pool=100).pool_for(30) == 300


def test_l2_fetches_a_margin_beyond_k_only():
    # l2's order is the L2 candidates' own: only rounding near the k-th place can move.
    assert Scoring(pool=100).pool_for(5) == 15
    assert Scoring(pool=100).pool_for(100) == 125


def test_exact_distances_put_a_saturated_song_at_zero_from_itself():
    rng = np.random.default_rng(0)
    # Squared norms near 510, as saturated embeddings have: float32 |a|^2+|b|^2-2ab cancels.
    points = rng.normal(size=(2000, 64)).astype(np.float32)
    points *= np.sqrt(510.0) / np.linalg.norm(points, axis=1, keepdims=True)
    points += rng.normal(size=points.shape).astype(np.float32) * 0.5
    own = np.array([exact_distances(p[None], p[None])[0, 0] for p in points])
    assert (own == 0.0).all()
    np.testing.assert_allclose(
        exact_distances(points[:3], points[3:6]), cdist(points[:3], points[3:6]), rtol=1e-12
    )
    # What FAISS's float32 |a|^2 + |b|^2 - 2ab gives (the defect being fixed): not all zero.
    shortcut, _ = faiss.knn(points, points, 1)
    assert (shortcut != 0).any()


def test_the_scoring_asked_falls_back_to_the_bundles_own_then_to_l2():
    recorded = Scoring("mutual-proximity", k=25, sample=500)
    assert scoring_asked(None, None, recorded=recorded) == recorded
    assert scoring_asked(None, 3, recorded=recorded) == Scoring("mutual-proximity", k=3, sample=500)
    assert scoring_asked("l2", None, recorded=recorded) == Scoring("l2", k=10)
    assert scoring_asked(None, None) == Scoring() and scoring_asked(None, 7) == Scoring(k=7)
    with pytest.raises(ValueError, match="from 1 to 1000"):
        scoring_asked(None, 0, recorded=recorded)
