"""Averaged ROC curves: hand-computed curves, and their area against the paper's mean AUC."""

import numpy as np
import pytest

from training.evaluation.metrics import draw_queries, mean_auc
from training.evaluation.roc import averaged_roc

# Songs on a line. From song 0 (artist 1), artist 1's others are at distances 1 and 2,
# the latter tied with an artist-2 song; 4 other-artist songs in all.
LINE = np.array([[0.0], [1.0], [2.0], [2.0], [3.0], [4.0], [5.0]])
ARTISTS = np.array([1, 1, 2, 1, 3, 2, 3])


def test_one_query_curve_has_a_diagonal_step_for_a_tie():
    curve = averaged_roc(LINE, ARTISTS, np.array([0]), n_points=9)
    # Vertices: (0, 0) -> (0, 1/2) for the song at 1; the tie at 2 goes diagonally
    # to (1/4, 1); then three negatives at FPR 2/4, 3/4, 1.
    expected = [0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(curve.fpr, np.linspace(0, 1, 9))
    np.testing.assert_allclose(curve.tpr, expected)
    # Pairs: the positive at 1 beats all 4 negatives, the one at 2 beats 3 and ties 1.
    assert curve.area == pytest.approx(7.5 / 8)
    assert curve.n_queries == 1


def test_curves_are_averaged_vertically_over_queries():
    # From song 1, both positives (songs 0 and 3) sit at distance 1, tied with song 2:
    # one diagonal from (0, 0) to (1/4, 1), AUC (3.5 + 3.5) / 8.
    curve = averaged_roc(LINE, ARTISTS, np.array([0, 1]), n_points=9)
    np.testing.assert_allclose(curve.tpr[:3], [(0.5 + 0) / 2, (0.75 + 0.5) / 2, 1.0])
    assert curve.area == pytest.approx((7.5 / 8 + 7 / 8) / 2)


def test_queries_without_positives_or_negatives_are_left_out():
    artists = np.array([1, 2, 2, 2])  # song 0 has no positive
    curve = averaged_roc(np.arange(4.0)[:, None], artists, np.array([0, 1]))
    assert curve.n_queries == 1
    lonely = averaged_roc(np.arange(2.0)[:, None], np.array([1, 1]), np.array([0]))
    assert lonely.n_queries == 0 and np.isnan(lonely.tpr).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_area_under_the_averaged_curve_is_the_mean_auc(seed):
    rng = np.random.default_rng(seed)
    artists = rng.integers(0, 40, size=400)
    # Small integer coordinates: many tied distances, which both must count as half.
    embeddings = rng.integers(0, 4, size=(400, 3)).astype(np.float32)
    embeddings[artists % 2 == 0, 0] += 2  # some structure, so AUC is not just 0.5
    queries = draw_queries(artists, rng=np.random.default_rng(seed))
    n_points = 1001
    curve = averaged_roc(embeddings, artists, queries, n_points=n_points)
    reference = mean_auc(embeddings, artists, queries)
    assert curve.n_queries == reference.n_queries
    # The trapezoid rule on a monotone curve from 0 to 1 errs by at most half a step.
    assert abs(curve.area - reference.mean_auc) <= 0.5 / (n_points - 1)
    assert np.all(np.diff(curve.tpr) >= -1e-12) and curve.tpr[-1] == pytest.approx(1.0)
