"""Approximate index kinds against brute-force numpy search: recall, exact distances, filters."""

import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.catalogue.rows import SongRows
from app.index.faiss_index import FaissSongIndex, search_alone_on_this_thread
from app.index.kinds import IndexSpec, effective_kind, padded_dim, principal_components
from app.index.protocol import Near, SongFilter, haversine_km
from app.main import create_app

N_SONGS, DIM, K = 12_000, 30, 10  # 12,000 >= the IVF-PQ training minimum; 30 pads to 32
LATENT = 12  # the directions the songs vary along, beside a little noise in all DIM
GENRES = np.array(["Rock", "Jazz", "Folk", "Pop"], dtype=object)


@pytest.fixture(scope="module")
def songs():
    """Clustered vectors (as embeddings are) with filter attributes; ids not equal to rows.

    As learned embeddings do, they vary mostly along a few directions (LATENT of DIM),
    so the HNSW graph is built over principal components, unless told otherwise.
    """
    rng = np.random.default_rng(5)
    basis = np.linalg.qr(rng.normal(size=(DIM, LATENT)))[0].T  # LATENT orthonormal rows
    centres = rng.normal(size=(60, LATENT)) * 3
    latent = centres[rng.integers(0, 60, N_SONGS)] + rng.normal(size=(N_SONGS, LATENT))
    vectors = (latent @ basis + 0.02 * rng.normal(size=(N_SONGS, DIM))).astype(np.float32)
    rows = SongRows(
        ids=np.arange(N_SONGS, dtype=np.int64) * 3 + 7,
        artist_ids=rng.integers(0, 2_000, N_SONGS),
        genres=GENRES[rng.integers(0, len(GENRES), N_SONGS)],
        latitudes=rng.uniform(-60, 60, N_SONGS),
        longitudes=rng.uniform(-180, 180, N_SONGS),
    )
    latent_queries = centres[rng.integers(0, 60, 50)] + rng.normal(size=(50, LATENT))
    queries = (latent_queries @ basis + 0.02 * rng.normal(size=(50, DIM))).astype(np.float32)
    return rows, vectors, queries


def brute_force(vectors, queries, k, allowed=None):
    """Row numbers of the k nearest allowed vectors to each query (numpy, no FAISS)."""
    d = ((queries[:, None, :].astype(np.float64) - vectors[None, :, :]) ** 2).sum(axis=2)
    if allowed is not None:
        d[:, ~allowed] = np.inf
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return [[r for r in row if np.isfinite(d[q, r])] for q, row in enumerate(order)]


def allowed_by(rows, where: SongFilter) -> np.ndarray:
    """An independent statement of the filter semantics, row by row."""
    ok = np.ones(len(rows), dtype=bool)
    for r in range(len(rows)):
        if where.exclude_artist is not None and rows.artist_ids[r] == where.exclude_artist:
            ok[r] = False
        if where.genre is not None and rows.genres[r] != where.genre:
            ok[r] = False
        if where.near is not None:
            km = haversine_km(
                where.near.latitude,
                where.near.longitude,
                rows.latitudes[r : r + 1],
                rows.longitudes[r : r + 1],
            )[0]
            ok[r] &= bool(km <= where.near.radius_km)
    return ok


def recall(found, expected) -> float:
    hits = sum(len(set(f) & set(e)) for f, e in zip(found, expected, strict=True))
    return hits / sum(len(e) for e in expected)


def rows_of(index_result, rows: SongRows):
    row_of = {int(i): r for r, i in enumerate(rows.ids)}
    return [[row_of[n.song_id] for n in hits] for hits in index_result]


APPROXIMATE = {
    "hnsw": IndexSpec(kind="hnsw"),  # over principal components, candidates re-ranked
    "hnsw-full": IndexSpec(kind="hnsw", hnsw_variance=1.0),  # over the full vectors
    "ivf": IndexSpec(kind="ivf"),
    "ivfpq": IndexSpec(kind="ivfpq"),
}


@pytest.fixture(scope="module", params=list(APPROXIMATE))
def approximate(request, songs):
    rows, vectors, _ = songs
    return FaissSongIndex.from_embeddings(rows, vectors, APPROXIMATE[request.param])


def test_each_kind_is_built_as_asked(approximate):
    assert approximate.kind == approximate.spec.kind
    over_components = isinstance(approximate.faiss_index, faiss.IndexPreTransform)
    assert over_components == (approximate.kind == "hnsw" and approximate.spec.hnsw_variance < 1)
    if over_components:  # the graph's dimension: the latent directions hold the variance
        assert faiss.downcast_index(approximate.faiss_index.index).d == LATENT


@pytest.mark.parametrize(
    ("variances", "share", "expected"),
    [
        ([50, 30, 15, 4, 1] + [0] * 15, 0.95, 3),  # 50 + 30 + 15 = 95 of 100
        ([50, 30, 15, 4, 1] + [0] * 15, 0.96, 4),
        ([50, 30, 15, 4, 1] + [0] * 15, 1.0, None),  # the full vectors asked for
        ([1] * 20, 0.99, None),  # 20 of 20 needed: more than half, nothing to gain
    ],
)
def test_principal_components_hold_the_share_of_variance_asked(variances, share, expected):
    # Independent of the data's orientation: a random rotation of known variances.
    rng = np.random.default_rng(0)
    rotation = np.linalg.qr(rng.normal(size=(20, 20)))[0]
    white = rng.normal(size=(50_000, 20))
    white = (white - white.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(white.T))).T
    sample = (white * np.sqrt(variances)) @ rotation.T
    assert principal_components(sample.astype(np.float32), share) == expected


def test_recall_at_10_against_brute_force(approximate, songs):
    rows, vectors, queries = songs
    found = rows_of(approximate.search(queries, k=K), rows)
    assert recall(found, brute_force(vectors, queries, K)) >= 0.9


def test_distances_are_the_true_l2_distances_of_the_songs_returned(approximate, songs):
    rows, vectors, queries = songs
    for q, hits in enumerate(approximate.search(queries[:10], k=K)):
        found = rows_of([hits], rows)[0]
        true = np.linalg.norm(vectors[found].astype(np.float64) - queries[q], axis=1)
        assert [n.distance for n in hits] == pytest.approx(true, rel=1e-4, abs=1e-4)
        assert np.all(np.diff(true) >= -1e-4)  # nearest first


EXACT_KINDS = {
    "flat": IndexSpec(kind="flat"),  # BLAS scan: |a|^2 + |b|^2 - 2ab in float32
    "flat-sq8": IndexSpec(kind="flat", store="sq8"),
    **APPROXIMATE,
}


@pytest.mark.parametrize("kind", list(EXACT_KINDS))
@pytest.mark.parametrize("where", [SongFilter(), SongFilter(genre="Rock")])
def test_every_kind_answers_with_float64_distances_of_the_stored_vectors(kind, where, songs):
    # ScoredIndex ranks by these without reading the vectors again, so every path (an
    # exact scan, FAISS's candidates, the filtered exact fallback) must give them exactly.
    rows, vectors, queries = songs
    index = FaissSongIndex.from_embeddings(rows, vectors, EXACT_KINDS[kind])
    stored = vectors[[3, 400, 7_000]]
    for query, hits in zip(
        [*queries[:5], *stored],
        index.search(np.concatenate([queries[:5], stored]), k=K, where=where),
        strict=True,
    ):
        found = rows_of([hits], rows)[0]
        true = np.sqrt(((vectors[found].astype(np.float64) - query.astype(np.float64)) ** 2).sum(1))
        np.testing.assert_allclose([n.distance for n in hits], true, rtol=1e-12, atol=0)
        assert np.all(np.diff(true) >= 0)  # nearest first by these distances
    for row in (3, 400, 7_000):  # a stored song is at exactly 0 from its own vector
        if where.genre is None or rows.genres[row] == where.genre:
            assert index.search(vectors[row], k=1, where=where)[0][0].distance == 0.0


@pytest.mark.parametrize(
    "where",
    [
        SongFilter(genre="Jazz"),
        SongFilter(exclude_artist=3),
        SongFilter(near=Near(latitude=10.0, longitude=20.0, radius_km=1_500.0)),
        SongFilter(genre="Folk", near=Near(latitude=0.0, longitude=0.0, radius_km=3_000.0)),
    ],
    ids=["genre", "other-artists", "near", "genre-and-near"],
)
@pytest.mark.parametrize("exact_below", [0, 20_000], ids=["approximate", "exact-subset"])
def test_filters_hold_with_every_kind(approximate, songs, where, exact_below):
    """Every song returned passes; k come back whenever k pass; recall stays high."""
    rows, vectors, queries = songs
    allowed = allowed_by(rows, where)
    expected = brute_force(vectors, queries, K, allowed)
    spec = IndexSpec(kind=approximate.kind, exact_below=exact_below)  # a search-time knob
    index = FaissSongIndex.from_embeddings(rows, vectors, spec, faiss_index=approximate.faiss_index)
    found = rows_of(index.search(queries, k=K, where=where), rows)
    assert all(allowed[r] for hits in found for r in hits)
    assert [len(hits) for hits in found] == [min(K, int(allowed.sum()))] * len(queries)
    assert recall(found, expected) >= (1.0 if int(allowed.sum()) <= exact_below else 0.85)


def test_a_filter_passing_fewer_than_k_songs_returns_exactly_those(approximate, songs):
    rows, vectors, queries = songs
    near = Near(latitude=float(rows.latitudes[0]), longitude=float(rows.longitudes[0]), radius_km=1)
    allowed = allowed_by(rows, SongFilter(near=near))
    hits = approximate.search(queries[:3], k=K, where=SongFilter(near=near))
    assert [{n.song_id for n in h} for h in hits] == [set(rows.ids[allowed])] * 3


def test_exclude_song_removes_only_that_song(approximate, songs):
    rows, vectors, _ = songs
    song = int(rows.ids[42])
    hits = approximate.search(vectors[42], k=K, exclude_song=song)[0]
    assert song not in {n.song_id for n in hits} and len(hits) == K


@pytest.mark.parametrize("removed", [False, True], ids=["all-live", "after-a-removal"])
def test_exclude_song_leaves_the_exact_top_k_of_the_other_songs(songs, removed):
    """The excluded song is dropped from k + 1 found, or masked when rows are dead:
    either way the answer is brute force over every other live song."""
    rows, vectors, queries = songs
    index = FaissSongIndex.from_embeddings(rows, vectors, IndexSpec(kind="flat"))
    live = np.ones(len(rows), dtype=bool)
    if removed:
        index.remove(rows.ids[7:8])
        live[7] = False
    # The song's own vector (it would be first), another song's, a query between songs.
    for query in (vectors[42], vectors[3], queries[0]):
        others = live.copy()
        others[42] = False
        found = rows_of(index.search(query, k=K, exclude_song=int(rows.ids[42])), rows)
        assert found == brute_force(vectors, query[None, :], K, others)


def test_songs_added_at_run_time_are_found(approximate, songs):
    rows, vectors, _ = songs
    copy = faiss.clone_index(approximate.faiss_index)  # the shared one stays as built
    index = FaissSongIndex.from_embeddings(rows, vectors, approximate.spec, faiss_index=copy)
    new = np.full((1, DIM), 40.0, dtype=np.float32)  # far from every cluster
    extra = SongRows(np.array([10**9]), np.array([1]), np.array(["Pop"], dtype=object),
                     np.array([0.0]), np.array([0.0]))  # fmt: skip
    assert index.add(extra, new) == 1
    assert index.search(new, k=1)[0][0].song_id == 10**9
    assert index.embedding_of(10**9) == pytest.approx(new[0])


def test_training_kinds_fall_back_when_there_is_too_little_data():
    assert effective_kind(IndexSpec(kind="ivfpq"), 500) == "ivf"
    assert effective_kind(IndexSpec(kind="ivf"), 0) == "flat"
    assert effective_kind(IndexSpec(kind="hnsw"), 0) == "hnsw"
    empty = FaissSongIndex(dim=8, spec=IndexSpec(kind="ivf"))
    assert empty.kind == "flat" and empty.search(np.zeros(8), k=3) == [[]]


def test_pq_padding_keeps_dimensions_a_multiple_of_eight():
    assert [padded_dim(d) for d in (518, 520, 30, 1)] == [520, 520, 32, 8]


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="index kind"):
        IndexSpec(kind="annoy")
    with pytest.raises(ValueError, match="at least 1"):
        IndexSpec(kind="hnsw", hnsw_ef_search=0)


@pytest.mark.parametrize(("kind", "built"), [("hnsw", "hnsw"), ("ivfpq", "ivf")])
def test_the_service_serves_the_configured_kind_with_filters(settings, catalogue, kind, built):
    """1,500 songs: too few to train PQ codebooks, so ivfpq is built as ivf and says so."""
    with TestClient(create_app(settings.model_copy(update={"index_kind": kind}))) as client:
        assert client.get("/health").json()["index_kind"] == built
        song = int(catalogue.track_ids[0])
        genre = catalogue.tracks["genre"].dropna().iloc[0]
        passing = set(catalogue.tracks.index[catalogue.tracks["genre"] == genre])
        answer = client.get(f"/songs/{song}/similar", params={"k": 10, "genre": genre})
        found = [r["id"] for r in answer.json()["results"]]
        assert len(found) == min(10, len(passing - {song})) and set(found) <= passing - {song}


@pytest.mark.parametrize("exact_chunk", [1, 8, 9, 10, 3, 1_000])
def test_exact_search_in_chunks_equals_brute_force_across_chunk_boundaries(exact_chunk):
    # 9 songs pass the filter: chunks of 1, 8 (= 9 - 1), 9, 10 (= 9 + 1), 3 (several)
    # and one larger than the index; k = 5 exceeds the 1- and 3-row chunks.
    rng = np.random.default_rng(11)
    n, dim, k = 40, 6, 5
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    genres = np.array(["Rock"] * n, dtype=object)
    genres[rng.choice(n, size=9, replace=False)] = "Jazz"
    rows = SongRows(
        ids=np.arange(n, dtype=np.int64) * 5 + 1,
        artist_ids=np.arange(n),
        genres=genres,
        latitudes=np.zeros(n),
        longitudes=np.zeros(n),
    )
    # The last 10 songs are added at run time, so chunks span both vector stores.
    base = slice(0, n - 10)
    index = FaissSongIndex.from_embeddings(
        SongRows(*(c[base] for c in rows.columns())),
        vectors[base],
        IndexSpec(kind="hnsw", exact_below=1_000),  # every filtered search is exact
        exact_chunk=exact_chunk,
    )
    index.add(SongRows(*(c[n - 10 :] for c in rows.columns())), vectors[n - 10 :])
    queries = rng.normal(size=(4, dim)).astype(np.float32)
    found = index.search(queries, k=k, where=SongFilter(genre="Jazz"))
    for query, neighbours in zip(queries, found, strict=True):
        jazz = np.flatnonzero(genres == "Jazz")
        distances = np.sqrt(((vectors[jazz].astype(np.float64) - query) ** 2).sum(axis=1))
        nearest = np.argsort(distances, kind="stable")[:k]
        assert [s.song_id for s in neighbours] == rows.ids[jazz[nearest]].tolist()
        np.testing.assert_allclose([s.distance for s in neighbours], distances[nearest], rtol=1e-5)


@pytest.fixture(params=["flat", "hnsw", "ivf", "ivfpq"])
def any_kind(request, songs):
    """A fresh index of each kind (removal changes it)."""
    rows, vectors, _ = songs
    return FaissSongIndex.from_embeddings(rows, vectors, IndexSpec(kind=request.param))


def test_removed_songs_are_never_returned_and_the_rest_still_are(any_kind, songs):
    rows, vectors, queries = songs
    # remove the songs nearest the queries: the ones a broken removal would return
    nearest = {r for found in brute_force(vectors, queries, 3) for r in found}
    removed = np.array(sorted(nearest))
    assert any_kind.remove(rows.ids[removed]) == len(removed)
    assert any_kind.remove(rows.ids[removed]) == 0  # absent ids are ignored
    alive = np.ones(len(rows), dtype=bool)
    alive[removed] = False
    found = rows_of(any_kind.search(queries, k=K), rows)
    expected = brute_force(vectors, queries, K, allowed=alive)
    assert not {r for hits in found for r in hits} & nearest
    assert all(len(hits) == K for hits in found)
    assert recall(found, expected) >= (1.0 if any_kind.kind == "flat" else 0.9)
    where = SongFilter(genre="Rock")
    filtered = rows_of(any_kind.search(queries, k=K, where=where), rows)
    assert not {r for hits in filtered for r in hits} & nearest
    assert len(any_kind) == len(rows) - len(removed)
    assert set(any_kind.ids().tolist()) == set(rows.ids[alive].tolist())
    assert any_kind.missing(rows.ids[removed[:2]]).tolist() == rows.ids[removed[:2]].tolist()
    assert rows.ids[removed[0]] not in any_kind


def test_a_replace_moves_a_song_under_the_same_id(any_kind, songs):
    rows, vectors, _ = songs
    song = int(rows.ids[0])
    moved = np.full((1, DIM), -40.0, dtype=np.float32)  # far from every cluster
    one = SongRows(*(column[:1] for column in rows.columns()))
    assert any_kind.replace(one, moved) == 1  # it was indexed
    hits = any_kind.search(moved, k=2)[0]
    assert hits[0].song_id == song and hits[0].distance == pytest.approx(0.0, abs=1e-3)
    assert any_kind.embedding_of(song) == pytest.approx(moved[0])
    assert len(any_kind) == len(rows)
    # its old place is empty: a query at the old vector does not find it
    old = any_kind.search(vectors[:1], k=K)[0]
    assert song not in [n.song_id for n in old]
    any_kind.remove(np.array([song]))
    assert any_kind.replace(one, moved) == 0 and song in any_kind  # absent: added


def test_a_song_being_replaced_is_found_by_every_search_meanwhile(songs):
    # A remove then an add would leave a moment where the song is in neither place. Each
    # search here runs whenever the replacing thread lets go of the write lock (it then
    # pauses), so it would land in such a moment; a free-running writer found one too,
    # but only after minutes of searches.
    rows, vectors, _ = songs
    index = FaissSongIndex.from_embeddings(rows, vectors)
    song, one = int(rows.ids[0]), SongRows(*(column[:1] for column in rows.columns()))
    places = [vectors[:1], vectors[:1] + np.float32(0.01)]
    writing, let_go = index._lock.writing, threading.Event()

    @contextmanager
    def writing_then_pausing():
        with writing():
            yield
        let_go.set()
        time.sleep(0.01)  # a search runs now, before this writer takes the lock again

    index._lock.writing = writing_then_pausing
    found = []
    for turn in range(20):
        let_go.clear()
        writer = threading.Thread(target=index.replace, args=(one, places[turn % 2]))
        writer.start()
        assert let_go.wait(timeout=30)
        found.append(song in {n.song_id for n in index.search(vectors[:1], k=3)[0]})
        writer.join()
    assert all(found)


def _resident_kib(path) -> int:
    """Resident KiB of this process's mappings of `path` (/proc/self/smaps)."""
    resident, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        first = line.split(maxsplit=1)[0]
        if "-" in first and first[0] in "0123456789abcdef":  # a mapping's header line
            inside = line.rstrip().endswith(str(path))
        elif inside and first == "Rss:":
            resident += int(line.split()[1])
    return resident


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="reads Linux's smaps")
@pytest.mark.parametrize("start", ["cold", "warm"])
def test_ivfpq_over_mapped_embeddings_leaves_their_pages_out_of_the_process(songs, tmp_path, start):
    # IVF-PQ holds codes, not vectors: at a million songs, faulting in the mapped
    # embeddings (2 GB) would double the process. Its build, re-ranks and reads use the
    # file, when it is built over them (cold) and when it was persisted (warm).
    rows, vectors, queries = songs
    path = tmp_path / "embeddings.npy"
    np.save(path, vectors)
    spec = IndexSpec(kind="ivfpq")
    built = None if start == "cold" else FaissSongIndex.from_embeddings(rows, vectors, spec)
    mapped = np.load(path, mmap_mode="r")
    index = FaissSongIndex.from_embeddings(
        rows, mapped, spec, faiss_index=None if built is None else built.faiss_index
    )
    assert index.kind == "ivfpq"
    rng = np.random.default_rng(0)
    for query in queries:
        index.search(query, k=10, exclude_song=int(rows.ids[rng.integers(len(rows))]))
    index.embeddings_of(rows.ids[rng.choice(len(rows), size=2_000, replace=False)])
    np.testing.assert_array_equal(index.embedding_of(int(rows.ids[5])), vectors[5])
    assert _resident_kib(path) <= vectors.nbytes / 1024 / 10


def test_search_alone_on_this_thread_leaves_other_threads_their_cores():
    """The event loop's FAISS runs on one thread; builds on other threads keep theirs.

    Each thread first asks for 2 threads (a per-thread setting in OpenMP), so the check
    can tell a change apart even where OMP_NUM_THREADS=1 (the test workers)."""
    before = faiss.omp_get_max_threads()
    seen = {}
    other_set, limited = threading.Event(), threading.Event()

    def build_like():
        faiss.omp_set_num_threads(2)
        other_set.set()
        limited.wait(timeout=30)
        seen["other"] = faiss.omp_get_max_threads()

    def event_loop_like():
        faiss.omp_set_num_threads(2)
        other_set.wait(timeout=30)
        search_alone_on_this_thread()
        seen["limited"] = faiss.omp_get_max_threads()
        limited.set()

    threads = [threading.Thread(target=build_like), threading.Thread(target=event_loop_like)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"limited": 1, "other": 2}
    assert faiss.omp_get_max_threads() == before
