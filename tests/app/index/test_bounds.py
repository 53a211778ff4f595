"""Lower bounds from principal axes: bounds they are, and exact answers they give."""

from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.catalogue.rows import SongRows
from app.index import bounds as bounds_module
from app.index.bounds import ProjectedBounds
from app.index.exact import ExactScan, VectorStore
from app.index.faiss_index import FaissSongIndex
from app.index.kinds import IndexSpec
from app.index.protocol import SongFilter

DIM = 64  # above BOUND_DIMS, so that the flat kind keeps its bounds


AXES = np.linalg.qr(np.random.default_rng(0).normal(size=(DIM, 5)))[0].T


def low_rank(rng, n, *, noise=0.05):
    """Rows whose variance lies mostly in a few axes, as learned embeddings' does."""
    spread = rng.normal(size=(n, len(AXES))) * 4 @ AXES
    return (spread + rng.normal(size=(n, DIM)) * noise + 7).astype(np.float32)


def squared(vectors, query):
    return ((vectors.astype(np.float64) - query.astype(np.float64)) ** 2).sum(axis=1)


def brute_force(vectors, query, k, mask=None):
    d = squared(vectors, query)
    if mask is not None:
        d[~mask] = np.inf
    order = np.argsort(d, kind="stable")[:k]
    return order[np.isfinite(d[order])].tolist()


def assert_nearest(vectors, query, found, k, mask=None):
    """found holds the k nearest allowed rows: ExactScan ranks by float32 distances, so
    rows nearly tied may swap places; their float64 distances must be the k smallest."""
    found = [int(r) for r in found if r >= 0]
    expected = brute_force(vectors, query, k, mask)
    assert len(found) == len(expected) and (mask is None or mask[found].all())
    d = squared(vectors, query)
    np.testing.assert_allclose(d[found], d[expected], rtol=1e-6)


@pytest.mark.parametrize("fitted_on", ["same rows", "other rows"])
def test_the_short_points_distance_never_exceeds_the_true_one(fitted_on):
    rng = np.random.default_rng(1)
    vectors, queries = low_rank(rng, 3_000), low_rank(rng, 50)
    bounds = ProjectedBounds(DIM, dims=4)
    # Axes fitted elsewhere are still orthonormal: looser bounds, bounds all the same.
    bounds.fit(vectors if fitted_on == "same rows" else rng.normal(size=(500, DIM)))
    rows, _ = bounds._short(vectors)
    points, _ = bounds._short(queries)
    short = ((rows[None, :, :].astype(np.float64) - points[:, None, :]) ** 2).sum(axis=2)
    true = ((vectors[None, :, :].astype(np.float64) - queries[:, None, :]) ** 2).sum(axis=2)
    assert (short <= true * (1 + 1e-5) + 1e-4).all()
    if fitted_on == "same rows":  # the rows' own axes hold most of each distance
        assert np.median(short / true) > 0.9


@pytest.fixture(scope="module")
def bounded_scan():
    rng = np.random.default_rng(2)
    vectors = low_rank(rng, 8_000)
    store = VectorStore(vectors[:6_000])
    scan = ExactScan(store, bound_dims=6, bound_min_rows=1_000)
    store.append(vectors[6_000:])  # rows added after the axes were fitted
    scan.appended()
    return scan, vectors, low_rank(rng, 40)


def test_bounded_searches_equal_brute_force_for_random_masks(bounded_scan):
    scan, vectors, queries = bounded_scan
    rng = np.random.default_rng(3)
    answered_by_bounds = 0
    for q, query in enumerate(queries):
        k = int(rng.integers(1, 60))
        mask = None if q % 3 == 0 else rng.random(len(vectors)) < rng.uniform(0.2, 1.0)
        answered_by_bounds += scan.search_bounded(query, k=k, allowed=mask) is not None
        _, found = scan.search(query[None], k=k, allowed=[mask])
        assert_nearest(vectors, query, found[0], k, mask)
    assert answered_by_bounds == len(queries)  # the bounds answered, not a fallback scan


def test_rows_added_after_fitting_find_themselves_by_their_bounds(bounded_scan):
    scan, vectors, _ = bounded_scan
    for row in (3, 6_001, 7_999):
        distances, found = scan.search_bounded(vectors[row], k=3, allowed=None)
        assert found[0][0] == row and distances[0][0] == 0.0


def counting_range_searches(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = faiss.IndexFlatL2.range_search

    def counted(index, *args, **kwargs):
        calls.append(1)
        return real(index, *args, **kwargs)

    monkeypatch.setattr(faiss.IndexFlatL2, "range_search", counted)
    return calls


def test_a_range_search_finds_the_rows_past_the_first_reach_within_the_mask(monkeypatch):
    rng = np.random.default_rng(7)
    vectors = low_rank(rng, 4_000, noise=0.6)  # looser bounds: more rows pass than fetched
    scan = ExactScan(VectorStore(vectors), bound_dims=6, bound_min_rows=1_000)
    monkeypatch.setattr(bounds_module, "REACH", 8)
    calls = counting_range_searches(monkeypatch)
    for query in low_rank(rng, 10, noise=0.6):
        mask = rng.random(len(vectors)) < 0.5
        distances, found = scan.search_bounded(query, k=1, allowed=mask)
        assert_nearest(vectors, query, found[0], 1, mask)
    assert len(calls) >= 3  # the range searches ran, and their rows gave the answers


def test_a_mask_passing_fewer_rows_than_the_pool_yields_all_of_them():
    rng = np.random.default_rng(8)
    vectors = rng.normal(size=(2_000, DIM)).astype(np.float32)
    bounds = ProjectedBounds(DIM, dims=1)  # loose: bound order far from distance order
    bounds.fit(vectors)
    bounds.add(vectors)
    mask = np.zeros(len(vectors), dtype=bool)
    mask[rng.choice(len(vectors), 15, replace=False)] = True
    for query in rng.normal(size=(5, DIM)).astype(np.float32):
        rows = bounds.candidates(
            query,
            k=5,
            pool=21,
            mask=mask,
            most=500,
            exact=lambda r, q=query: squared(vectors[r], q),
        )
        assert sorted(rows.tolist()) == np.flatnonzero(mask).tolist()


def test_rows_whose_bound_is_their_distance_keep_the_kth_by_the_rounding_margin():
    """Rows in the span of the axes: bound and distance are one number, so only the margin
    keeps the k-th nearest row (whose distance is tau) inside the radius."""
    rng = np.random.default_rng(9)
    vectors = low_rank(rng, 4_000, noise=0.0)
    scan = ExactScan(VectorStore(vectors), bound_dims=5, bound_min_rows=1_000)
    for query in low_rank(rng, 40, noise=0.0):
        for k in (1, 10):
            _, found = scan.search_bounded(query, k=k, allowed=None)
            assert_nearest(vectors, query, found[0], k)


def test_one_far_off_row_leaves_the_other_queries_bounded(bounded_scan, monkeypatch):
    _, vectors, queries = bounded_scan
    store = VectorStore(vectors)
    scan = ExactScan(store, bound_dims=6, bound_min_rows=1_000)
    store.append(vectors[:1] * 50)  # a spread thousands of times the others'
    scan.appended()
    calls = counting_range_searches(monkeypatch)
    every = np.concatenate([vectors, vectors[:1] * 50])
    for query in queries[:10]:
        _, found = scan.search_bounded(query, k=10, allowed=None)
        assert_nearest(every, query, found[0], 10)
    assert not calls  # the margins stayed the queries' own: the first reach sufficed


def test_bounds_passing_more_rows_than_asked_answer_none():
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(5_000, DIM)).astype(np.float32)  # no dominant axes
    bounds = ProjectedBounds(DIM, dims=4)
    bounds.fit(vectors)
    bounds.add(vectors)

    def exact(rows):
        return squared(vectors[rows], query)

    for query in rng.normal(size=(5, DIM)).astype(np.float32):
        assert bounds.candidates(query, k=10, pool=20, mask=None, most=500, exact=exact) is None


def test_a_scan_whose_bounds_are_loose_drops_them_and_scans_with_the_same_answer():
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(5_000, DIM)).astype(np.float32)  # no dominant axes
    scan = ExactScan(VectorStore(vectors), bound_dims=4, bound_min_rows=1_000)
    assert not scan.bounded
    for query in rng.normal(size=(5, DIM)).astype(np.float32):
        assert scan.search_bounded(query, k=10, allowed=None) is None
        _, found = scan.search(query[None], k=10, allowed=[None])
        assert_nearest(vectors, query, found[0], 10)


def test_a_flat_index_at_its_default_size_answers_exactly_with_its_bounds():
    rng = np.random.default_rng(5)
    n = 20_000  # past BOUND_MIN_ROWS: the flat kind fits its bounds
    vectors = low_rank(rng, n)
    rows = SongRows(
        ids=np.arange(n, dtype=np.int64) * 3 + 1,
        artist_ids=rng.integers(0, 500, n),
        genres=np.array(["Rock", "Jazz"], dtype=object)[rng.integers(0, 2, n)],
        latitudes=np.zeros(n),
        longitudes=np.zeros(n),
    )
    index = FaissSongIndex.from_embeddings(rows, vectors, IndexSpec(coalesce_wait_ms=0.5))
    index.remove(rows.ids[[7, 100]])
    assert index._exact.bounded
    alive = np.ones(n, dtype=bool)
    alive[[7, 100]] = False
    queries = vectors[rng.integers(0, n, 40)] + rng.normal(size=(40, DIM)).astype(np.float32) / 10

    def search(q):  # from many threads at once: lone bounded queries beside coalesced scans
        where = SongFilter(genre="Jazz") if q % 2 else SongFilter()
        return [n_.song_id for n_ in index.search(queries[q], k=12, where=where)[0]]

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(search, range(len(queries))))
    for q, found in enumerate(answers):
        mask = alive & (rows.genres == "Jazz") if q % 2 else alive
        assert found == rows.ids[brute_force(vectors, queries[q], 12, mask)].tolist()


@pytest.mark.parametrize("store", ["float16", "sq8"])
def test_a_quantised_store_with_bounds_answers_exactly(store):
    """The codes only serve scans; the rows the bounds pass are ranked by float32 vectors,
    so the answer is the exact one, not one within the codes' re-ranked pool."""
    rng = np.random.default_rng(6)
    vectors = low_rank(rng, 6_000)
    scan = ExactScan(VectorStore(vectors), store=store, bound_dims=6, bound_min_rows=1_000)
    assert scan.bounded
    for q, query in enumerate(low_rank(rng, 15)):
        mask = None if q % 2 else rng.random(len(vectors)) < 0.6
        assert scan.search_bounded(query, k=20, allowed=mask) is not None
        _, found = scan.search(query[None], k=20, allowed=[mask])
        assert_nearest(vectors, query, found[0], 20, mask)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=400),
    k=st.integers(min_value=1, max_value=60),
    share=st.floats(min_value=0.0, max_value=1.0),
    copies=st.integers(min_value=0, max_value=20),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_bounded_answers_equal_brute_force_on_any_small_catalogue(n, k, share, copies, seed):
    """Tiny catalogues, k past the rows that pass, masks passing none, exact duplicates."""
    rng = np.random.default_rng(seed)
    vectors = low_rank(rng, n)
    vectors = np.concatenate([vectors, np.repeat(vectors[:1], copies, axis=0)])
    scan = ExactScan(VectorStore(vectors), bound_dims=4, bound_min_rows=1)
    query = vectors[rng.integers(0, len(vectors))] + rng.normal(size=DIM).astype(np.float32)
    mask = rng.random(len(vectors)) < share
    bounds = scan._bounds  # None where the probes found them loose: then only the scan
    candidates = None
    if bounds is not None:
        candidates = bounds.candidates(
            query,
            k=k,
            pool=k + 16,
            mask=mask,
            most=len(vectors),
            exact=lambda r: squared(vectors[r], query),
        )
    if candidates is not None:
        expected = brute_force(vectors, query, k, mask)
        d = squared(vectors, query)
        kth = d[expected[-1]] if expected else -np.inf
        # Every allowed row at most as far as the k-th nearest is a candidate.
        assert set(np.flatnonzero(mask & (d <= kth)).tolist()) <= set(candidates.tolist())
        assert mask[candidates].all()
    _, found = scan.search(query[None], k=k, allowed=[mask])
    assert_nearest(vectors, query, found[0], k, mask)


def test_bounds_fitted_when_added_rows_cross_the_threshold_cover_the_earlier_rows():
    rng = np.random.default_rng(10)
    vectors = low_rank(rng, 8_000)
    store = VectorStore(vectors[:500])
    scan = ExactScan(store, bound_dims=6, bound_min_rows=1_000)
    assert not scan.bounded  # too few rows yet: scanned
    store.append(vectors[500:])
    scan.appended()
    assert scan.bounded
    for row in (0, 499, 500, 7_999):  # before and after the crossing
        distances, found = scan.search_bounded(vectors[row], k=3, allowed=None)
        assert found[0][0] == row and distances[0][0] == 0.0
    for query in low_rank(rng, 10):
        _, found = scan.search_bounded(query, k=15, allowed=None)
        assert_nearest(vectors, query, found[0], 15)
