"""Mean AUC against a brute-force pair-counting reference and known values."""

import numpy as np
import pytest

from training.evaluation.metrics import (
    all_queries,
    auc_per_query,
    draw_queries,
    mean_auc,
    per_query_scores,
    retrieval_scores,
)


def brute_force_auc(points: np.ndarray, artists: np.ndarray, query: int) -> float:
    """Count (relevant, irrelevant) pairs where the relevant song is closer; ties half."""
    d = np.linalg.norm(points - points[query], axis=1)
    others = np.arange(len(points)) != query
    pos = d[others & (artists == artists[query])]
    neg = d[others & (artists != artists[query])]
    wins = sum(float(p < n) + 0.5 * float(p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(6))
def test_auc_matches_brute_force_pair_counting(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 40))
    artists = rng.integers(0, 5, size=n)
    # Integer coordinates make exact distance ties common, exercising the half credit.
    points = rng.integers(0, 3, size=(n, 2)).astype(np.float64)
    queries = draw_queries(artists, rng=rng)
    got = auc_per_query(points, artists, queries)
    expected = [brute_force_auc(points, artists, int(q)) for q in queries]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_perfect_ranking_scores_one():
    artists = np.array([0, 0, 0, 1, 1, 1])
    points = np.array([[0.0], [0.1], [0.2], [10.0], [10.1], [10.2]])
    assert mean_auc(points, artists, np.array([0, 3])).mean_auc == 1.0


def test_reversed_ranking_scores_zero():
    # The query's own artist's other song is the farthest of all.
    artists = np.array([0, 1, 1, 0])
    points = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert auc_per_query(points, artists, np.array([0]))[0] == 0.0


def test_all_tied_ranking_scores_one_half():
    artists = np.array([0, 0, 1, 1, 2])
    points = np.zeros((5, 3))
    np.testing.assert_allclose(auc_per_query(points, artists, np.array([0, 2])), 0.5)


def test_query_without_other_artists_has_no_auc_and_is_not_averaged():
    artists = np.array([0, 0, 1, 1])
    points = np.array([[0.0], [1.0], [5.0], [6.0]])
    assert mean_auc(points, artists, np.array([0])).n_queries == 1
    assert np.isnan(auc_per_query(points[:2], artists[:2], np.array([0]))[0])


def test_queries_are_one_per_multi_track_artist():
    artists = np.array([7, 7, 3, 3, 3, 9, 5, 5])
    queries = draw_queries(artists, rng=np.random.default_rng(0))
    assert sorted(artists[queries].tolist()) == [3, 5, 7]


@pytest.mark.parametrize("n_queries", [1, 4, 5, 6, 17])
def test_queries_ranked_in_blocks_score_as_one_block_and_as_pair_counting(n_queries):
    # Blocks of 5 queries: 1, 5 - 1, 5, 5 + 1 and several blocks with a remainder.
    rng = np.random.default_rng(n_queries)
    artists = rng.integers(0, 6, size=60)
    points = rng.normal(size=(60, 3))
    queries = rng.permutation(all_queries(artists))[:n_queries]
    blocked = per_query_scores(points, artists, queries, k=4, query_chunk=5)
    whole = per_query_scores(points, artists, queries, k=4, query_chunk=len(points))
    for name in ("auc", "ap", "recall", "ndcg"):
        assert blocked[name].shape == (n_queries,)
        np.testing.assert_allclose(blocked[name], whole[name], rtol=0, atol=1e-12)
    expected = [brute_force_auc(points, artists, int(q)) for q in queries]
    np.testing.assert_allclose(blocked["auc"], expected, rtol=0, atol=1e-12)


# One query at 0 (artist 0); others on a line: ranked B A B A B by distance.
LINE = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
LINE_ARTISTS = np.array([0, 1, 0, 1, 0, 1])


def test_ranked_metrics_equal_hand_computed_values():
    got = per_query_scores(LINE, LINE_ARTISTS, np.array([0]), k=2)
    # Relevant at ranks 2 and 4: precisions 1/2 and 2/4.
    assert got["ap"][0] == pytest.approx((1 / 2 + 2 / 4) / 2)
    # One of the two relevant songs in the top 2.
    assert got["recall"][0] == pytest.approx(0.5)
    # DCG@2 = 1/log2(3); ideal: 1/log2(2) + 1/log2(3).
    assert got["ndcg"][0] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    # 3 of the 6 positive/negative pairs have the negative closer.
    assert got["auc"][0] == pytest.approx(0.5)


def test_ranked_metrics_at_ten_count_the_whole_short_list():
    score = retrieval_scores(LINE, LINE_ARTISTS, np.array([0]), k=10)
    assert score.recall_at_k == pytest.approx(1.0)
    ideal = 1 + 1 / np.log2(3)
    assert score.ndcg_at_k == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / ideal)
    assert score.mean_average_precision == pytest.approx(0.5) and score.n_queries == 1


def test_a_perfect_ranking_scores_one_everywhere():
    points = np.array([[0.0], [0.1], [0.2], [9.0], [9.1]])
    score = retrieval_scores(points, np.array([0, 0, 0, 1, 1]), np.arange(5), k=10)
    assert (score.mean_auc, score.mean_average_precision) == (1.0, 1.0)
    assert (score.recall_at_k, score.ndcg_at_k) == (1.0, 1.0)


def test_every_track_queries_skip_single_track_artists():
    assert all_queries(np.array([7, 3, 7, 5, 3, 3])).tolist() == [0, 1, 2, 4, 5]


def one_artist_and_one_other(n: int, *, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The issue's posted set: n - 1 songs by one artist and a single song by another."""
    rng = np.random.default_rng(0)
    artists = np.zeros(n, dtype=np.int64)
    artists[-1] = 1
    return rng.normal(size=(n, dim)), artists


def test_memory_is_linear_in_the_songs_even_when_one_artist_has_them_all():
    import tracemalloc

    n = 7_500
    points, artists = one_artist_and_one_other(n)
    queries = all_queries(artists)[:8]  # each query has 7,498 relevant songs
    tracemalloc.start()
    try:
        per_query_scores(points, artists, queries)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A few float64/int64 rows of n values per query, plus the block of distances;
    # an n_pos x n comparison would be 7,498 x 7,500 bytes (56 MB) per query.
    assert peak < 100 * n * 8


def test_ranks_with_thousands_of_relevant_songs_match_brute_force():
    _, artists = one_artist_and_one_other(300)
    # Integer coordinates: exact ties among the relevant songs and with the other one.
    points = np.random.default_rng(1).integers(0, 4, size=(300, 2)).astype(np.float64)
    queries = all_queries(artists)[:20]
    got = auc_per_query(points, artists, queries)
    expected = [brute_force_auc(points, artists, int(q)) for q in queries]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_ranking_stops_between_blocks_when_asked():
    from training.evaluation.metrics import EvaluationStopped, stop_when

    points, artists = one_artist_and_one_other(100)
    checks = []

    def stop_after_the_first_block() -> bool:
        checks.append(1)
        return len(checks) > 1

    with stop_when(stop_after_the_first_block), pytest.raises(EvaluationStopped):
        per_query_scores(points, artists, np.repeat(all_queries(artists), 10))
    assert len(checks) == 2
    assert per_query_scores(points, artists, all_queries(artists))["auc"].shape == (99,)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_vectors_that_are_not_finite_are_refused_not_scored_out_of_range(bad):
    points, artists = one_artist_and_one_other(50)
    points[7, 3] = bad
    with pytest.raises(ValueError, match="1 song.* not finite .*row 7"):
        retrieval_scores(points, artists, all_queries(artists))
