"""The exact scan against brute-force numpy: every filter, added rows, quantised stores."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.catalogue.rows import SongRows
from app.index.exact import ExactScan, FileRows, VectorStore
from app.index.faiss_index import FaissSongIndex
from app.index.kinds import IndexSpec
from app.index.protocol import Near, SongFilter, haversine_km

N_SONGS, DIM, N_ADDED = 6_000, 48, 700
GENRES = np.array(["Rock", "Jazz", "Folk", "Pop", "Noise"], dtype=object)


def clustered(rng, n, centres):
    picks = rng.integers(0, len(centres), n)
    return (centres[picks] + rng.normal(size=(n, centres.shape[1]))).astype(np.float32)


@pytest.fixture(scope="module")
def catalogue():
    rng = np.random.default_rng(11)
    centres = rng.normal(size=(40, DIM)) * 3
    n = N_SONGS + N_ADDED
    rows = SongRows(
        ids=rng.permutation(n).astype(np.int64) * 5 + 3,
        artist_ids=rng.integers(0, 300, n),
        # Noise is rare: a genre filter on it takes the gathering path.
        genres=GENRES[rng.choice(len(GENRES), n, p=[0.4, 0.25, 0.2, 0.13, 0.02])],
        latitudes=rng.uniform(-60, 60, n),
        longitudes=rng.uniform(-180, 180, n),
    )
    return rows, clustered(rng, n, centres), clustered(rng, 40, centres)


def expected_ids(rows, vectors, query, k, where, exclude_song):
    """Brute force in float64, with the filter stated row by row."""
    d = ((vectors.astype(np.float64) - query.astype(np.float64)) ** 2).sum(axis=1)
    ok = np.ones(len(rows), dtype=bool)
    if exclude_song is not None:
        ok &= rows.ids != exclude_song
    if where.exclude_artist is not None:
        ok &= rows.artist_ids != where.exclude_artist
    if where.genre is not None:
        ok &= rows.genres == where.genre
    if where.near is not None:
        near = where.near
        ok &= haversine_km(near.latitude, near.longitude, rows.latitudes, rows.longitudes) <= (
            near.radius_km
        )
    order = [r for r in np.argsort(d, kind="stable") if ok[r]][:k]
    return [int(rows.ids[r]) for r in order], np.sqrt(d[order])


def random_filter(rng, rows):
    choice = rng.integers(0, 5)
    if choice == 0:
        return SongFilter()
    if choice == 1:
        return SongFilter(genre=str(rng.choice(GENRES)))
    if choice == 2:
        return SongFilter(exclude_artist=int(rng.choice(rows.artist_ids)))
    if choice == 3:
        place = Near(float(rng.uniform(-40, 40)), float(rng.uniform(-150, 150)), 3000.0)
        return SongFilter(near=place)
    return SongFilter(genre="Noise", exclude_artist=int(rng.choice(rows.artist_ids)))


def split(rows, n):
    return (
        SongRows(*(c[:n] for c in rows.columns())),
        SongRows(*(c[n:] for c in rows.columns())),
    )


@pytest.fixture(scope="module", params=["float32", "float16", "sq8"])
def flat_index(request, catalogue):
    """A flat index built on most songs, the rest added at run time (base + added rows)."""
    rows, vectors, _ = catalogue
    first, later = split(rows, N_SONGS)
    spec = IndexSpec(store=request.param, store_refine=8, coalesce_wait_ms=0)
    index = FaissSongIndex.from_embeddings(first, vectors[:N_SONGS], spec)
    index.add(later, vectors[N_SONGS:])
    return index


def test_flat_search_equals_brute_force_for_random_filters(flat_index, catalogue):
    rows, vectors, queries = catalogue
    rng = np.random.default_rng(3)
    for q in range(len(queries)):
        where, k = random_filter(rng, rows), int(rng.integers(1, 40))
        exclude = int(rng.choice(rows.ids)) if q % 2 else None
        found = flat_index.search(queries[q], k=k, where=where, exclude_song=exclude)[0]
        ids, distances = expected_ids(rows, vectors, queries[q], k, where, exclude)
        assert [n.song_id for n in found] == ids, (flat_index.spec.store, where)
        np.testing.assert_allclose([n.distance for n in found], distances, rtol=1e-5)


def test_stored_songs_find_themselves_first_at_distance_zero(flat_index, catalogue):
    rows, vectors, _ = catalogue
    for row in (0, 17, N_SONGS + 5):  # in the base and among the added rows
        nearest = flat_index.search(vectors[row], k=3)[0][0]
        assert nearest.song_id == rows.ids[row] and nearest.distance == 0.0


def assert_brute_force(vectors, queries, masks, found, distances, k):
    """Each query's rows and squared distances are the k nearest allowed rows in float64."""
    for q, mask in enumerate(masks):
        d = ((vectors.astype(np.float64) - queries[q]) ** 2).sum(axis=1)
        if mask is not None:
            d[~mask] = np.inf
        assert found[q].tolist() == np.argsort(d, kind="stable")[:k].tolist()
        if distances is not None:
            np.testing.assert_allclose(distances[q], d[found[q]], rtol=1e-5)


def test_a_batch_of_queries_with_a_mask_each_equals_brute_force(catalogue):
    _, vectors, queries = catalogue
    scan = ExactScan(VectorStore(vectors))
    rng = np.random.default_rng(8)
    masks = [None, rng.random(len(vectors)) < 0.5, rng.random(len(vectors)) < 0.01]
    masks += [rng.random(len(vectors)) < 0.9 for _ in range(len(queries) - len(masks))]
    distances, found = scan.search(queries, k=12, allowed=masks)
    assert_brute_force(vectors, queries, masks, found, distances, 12)


@pytest.mark.parametrize("n_queries", [2, 3, 4, 9])  # a product per query, then one in all
@pytest.mark.parametrize("chunk", [None, 997])  # 997: blocks that end mid-store
def test_small_batches_scanned_in_blocks_equal_brute_force(catalogue, n_queries, chunk):
    _, vectors, queries = catalogue
    store = VectorStore(vectors[:N_SONGS])
    store.append(vectors[N_SONGS:])  # rows added at run time: a second part to scan
    scan = ExactScan(store, chunk=chunk)
    scan.appended()
    rng = np.random.default_rng(n_queries)
    masks = [None if q % 2 else rng.random(len(vectors)) < 0.7 for q in range(n_queries)]
    distances, found = scan.search(queries[:n_queries], k=15, allowed=masks)
    assert_brute_force(vectors, queries, masks, found, distances, 15)


def test_concurrent_searches_scan_memory_one_at_a_time(catalogue):
    """Callers on many threads take turns over the stored rows; each gets its own answer."""
    _, vectors, queries = catalogue
    scan = ExactScan(VectorStore(vectors))
    inner, active, most = scan._chunk_scores, [0], [0]
    guard = threading.Lock()

    def watched(*args):
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.002)  # widen the window in which an overlap would show
        try:
            return inner(*args)
        finally:
            with guard:
                active[0] -= 1

    scan._chunk_scores = watched
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda q: scan.search(q[None], k=5, allowed=[None])[1][0], queries))
    assert most[0] == 1
    assert_brute_force(vectors, queries, [None] * len(queries), answers, None, 5)


def test_a_mask_passing_fewer_than_k_rows_pads_the_answer(catalogue):
    _, vectors, queries = catalogue
    mask = np.zeros(len(vectors), dtype=bool)
    mask[[4, 90, 2000]] = True
    distances, found = ExactScan(VectorStore(vectors)).search(queries[:1], k=5, allowed=[mask])
    assert sorted(found[0, :3].tolist()) == [4, 90, 2000] and found[0, 3:].tolist() == [-1, -1]
    assert np.isinf(distances[0, 3:]).all()


@pytest.mark.parametrize("store", ["float16", "sq8"])
def test_quantised_answers_equal_exact_ones_where_the_pool_holds_the_true_top_k(store, catalogue):
    """The pool is the refine x k nearest by the decoded codes; where it holds the exact top k,
    the re-ranked answer must be that top k, in exact order."""
    _, vectors, queries = catalogue
    k, refine = 10, 2  # a small pool, so that a query's pool may miss
    scan = ExactScan(VectorStore(vectors), store=store, refine=refine)
    decoded = scan._codes.reconstruct_n(0, len(vectors)).astype(np.float64)
    covered = 0
    distances, found = scan.search(queries, k=k, allowed=[None] * len(queries))
    for q, query in enumerate(queries):
        exact = ((vectors.astype(np.float64) - query) ** 2).sum(axis=1)
        truth = np.argsort(exact, kind="stable")[:k]
        approx = ((decoded - query) ** 2).sum(axis=1)
        pool = np.argsort(approx, kind="stable")[: max(k * refine, k + 32)]
        if set(truth) <= set(pool):
            covered += 1
            assert found[q].tolist() == truth.tolist()
            np.testing.assert_allclose(distances[q], exact[truth], rtol=1e-5)
    assert covered >= len(queries) * 0.8  # the property was checked, not skipped
    assert scan.scanned_bytes < vectors.nbytes / (1.9 if store == "float16" else 3.9)


def test_a_quantised_store_over_a_mapped_file_re_ranks_rows_read_from_the_file(catalogue, tmp_path):
    _, vectors, queries = catalogue
    np.save(tmp_path / "embeddings.npy", vectors)
    mapped = np.load(tmp_path / "embeddings.npy", mmap_mode="r")
    store = VectorStore(mapped)
    scan = ExactScan(store, store="sq8", refine=8)
    assert store.read_through_file  # re-ranked rows are read, not faulted in
    rows = np.array([5, 3, 6_000, 17, 3])
    np.testing.assert_array_equal(store.take(rows), vectors[rows])
    _, found = scan.search(queries, k=10, allowed=[None] * len(queries))
    for q, query in enumerate(queries):
        exact = ((vectors.astype(np.float64) - query) ** 2).sum(axis=1)
        assert found[q].tolist() == np.argsort(exact, kind="stable")[:10].tolist()


def test_file_rows_read_what_the_mapped_array_holds(catalogue, tmp_path):
    _, vectors, _ = catalogue
    np.save(tmp_path / "embeddings.npy", vectors)
    store = VectorStore(np.load(tmp_path / "embeddings.npy", mmap_mode="r"))
    store.append(vectors[:3] + 1)  # rows added at run time come after the file's
    rows = FileRows(store)
    everything = np.concatenate([vectors, vectors[:3] + 1])
    assert rows.shape == everything.shape and len(rows) == len(everything)
    np.testing.assert_array_equal(rows[10:500], everything[10:500])
    np.testing.assert_array_equal(rows[:], everything)
    picks = np.array([len(everything) - 1, 7, 7, 0, 4_321])
    np.testing.assert_array_equal(rows[picks], everything[picks])
    assert not store.read_through_file  # the store's own reads are as they were
    with pytest.raises(ValueError, match="contiguous"):
        rows[::2]
