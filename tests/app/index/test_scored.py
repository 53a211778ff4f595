"""The scored index against a direct numpy reference: re-rank, radii upkeep, exact distances."""

import threading

import faiss
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scoring_reference import allowed_by, reference_top

from app.catalogue.rows import SongRows
from app.index import scored
from app.index.faiss_index import FaissSongIndex
from app.index.protocol import Near, Neighbour, SongFilter
from app.index.scored import (
    KTH,
    MEAN,
    RADIUS,
    SD,
    NeighbourhoodProgress,
    NeighbourhoodsNotReady,
    ScoredIndex,
)
from training.evaluation.scoring import SCORINGS, Scoring

K_RADIUS = 5
GENRES = np.array(["Rock", "Jazz", "Folk"], dtype=object)


def catalogue(n: int, dim: int = 8, seed: int = 0) -> tuple[SongRows, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, dim)) * 3
    which = rng.integers(0, 5, n)
    vectors = (centres[which] + rng.normal(size=(n, dim)) * (0.2 + which[:, None] * 0.4)).astype(
        np.float32
    )
    rows = SongRows(
        ids=np.arange(n, dtype=np.int64) * 2 + 11,
        artist_ids=rng.integers(0, 12, n),
        genres=GENRES[rng.integers(0, 3, n)],
        latitudes=rng.uniform(-60, 60, n),
        longitudes=rng.uniform(-180, 180, n),
    )
    return rows, vectors


FILTERS = [
    SongFilter(),
    SongFilter(genre="Jazz"),
    SongFilter(exclude_artist=3),
    SongFilter(near=Near(0.0, 0.0, 6000.0)),
]


@pytest.fixture(scope="module")
def small():
    rows, vectors = catalogue(90)  # the pool (100) covers every song
    inner = FaissSongIndex.from_embeddings(rows, vectors)
    return rows, vectors, ScoredIndex.build(inner, scoring=Scoring(k=K_RADIUS), eager=True)


@pytest.mark.parametrize("name", SCORINGS)
@pytest.mark.parametrize("where", FILTERS)
def test_the_top_k_equals_the_exact_re_ranking_of_the_whole_catalogue(small, name, where):
    rows, vectors, index = small
    for row in (0, 17, 42):
        got = index.search(
            vectors[row], k=7, where=where, exclude_song=int(rows.ids[row]), scoring=name
        )[0]
        allowed = allowed_by(rows, where, exclude_row=row)
        expected = reference_top(
            rows, vectors, vectors[row], name=name, k=7, allowed=allowed, own=row, k_radius=K_RADIUS
        )
        assert [n.song_id for n in got] == expected
    cold = vectors[5] * 0.5 + vectors[60] * 0.5  # not a stored song
    got = index.search(cold, k=7, where=where, scoring=name)[0]
    expected = reference_top(
        rows, vectors, cold, name=name, k=7, allowed=allowed_by(rows, where), k_radius=K_RADIUS
    )
    assert [n.song_id for n in got] == expected


def test_the_scorings_really_reorder_this_catalogue(small):
    # Guards the test above: it would pass vacuously if all scorings ranked alike.
    rows, vectors, index = small
    per_query = {
        name: [[n.song_id for n in r] for r in index.search(vectors[:30], k=7, scoring=name)]
        for name in SCORINGS
    }
    assert per_query["l2"] != per_query["local-scaling"]
    assert per_query["l2"] != per_query["mutual-proximity"]


def test_similarity_is_in_the_unit_interval_and_falls_with_the_score(small):
    rows, vectors, index = small
    for name in SCORINGS:
        found = index.search(vectors[3], k=40, scoring=name)[0]
        similarity = np.array([n.similarity for n in found])
        assert ((similarity >= 0) & (similarity <= 1)).all()
        assert (np.diff(similarity) <= 0).all()  # results come best first
        assert found[0].song_id == rows.ids[3] and similarity[0] > 0.99  # itself


def test_a_filter_that_passes_k_songs_returns_k_songs(small):
    rows, vectors, index = small
    where = SongFilter(genre="Folk")
    n_folk = int((rows.genres == "Folk").sum())
    assert (
        len(index.search(vectors[0], k=n_folk, where=where, scoring="local-scaling")[0]) == n_folk
    )


def test_an_unknown_scoring_is_refused_naming_the_allowed_ones(small):
    with pytest.raises(ValueError, match="l2, local-scaling, mutual-proximity"):
        small[2].search(small[1][0], k=3, scoring="cosine")


def test_own_vectors_are_at_distance_exactly_zero_in_a_saturated_catalogue():
    rng = np.random.default_rng(0)
    n, dim = 2000, 64
    # Squared norms near 510, and near-duplicate pairs: float32 FAISS cancels here.
    base = rng.normal(size=(n // 2, dim))
    base *= np.sqrt(510.0) / np.linalg.norm(base, axis=1, keepdims=True)
    vectors = np.concatenate([base, base + rng.normal(size=base.shape) * 0.01]).astype(np.float32)
    rows = SongRows.from_columns(list(range(n)), [0] * n, [None] * n, [None] * n, [None] * n)
    inner = FaissSongIndex.from_embeddings(rows, vectors)
    # The defect: FAISS's batched float32 search (||x||^2 + ||q||^2 - 2 x.q) cancels here.
    # (The flat kind's own scan re-ranks with sum((x - q)^2) and no longer shows it.)
    raw_d, raw_rows = faiss.knn(vectors, vectors, 2)
    assert ((raw_d[:, 0] != 0.0) | (raw_rows[:, 0] != np.arange(n))).any()
    index = ScoredIndex.build(inner, scoring=Scoring(), eager=True)
    for name in SCORINGS:
        found = index.search(vectors, k=2, scoring=name)
        for song, neighbours in enumerate(found):
            assert neighbours[0].song_id == song and neighbours[0].distance == 0.0
        twins = [(found[i][1].song_id, found[i][1].distance) for i in range(n // 2)]
        wide = vectors.astype(np.float64)
        expected = np.sqrt(((wide[: n // 2] - wide[n // 2 :]) ** 2).sum(1))
        # Each song's near-duplicate is next, at its exact distance.
        assert [t[0] for t in twins] == list(range(n // 2, n)) or name != "l2"
        if name == "l2":
            np.testing.assert_allclose([t[1] for t in twins], expected, rtol=1e-12)


def table_by_id(index: ScoredIndex, ids) -> np.ndarray:
    return np.array([index.table[index._pos[int(i)]] for i in ids])


def test_radii_after_adds_equal_a_full_recomputation():
    rows, vectors = catalogue(500, seed=3)
    first = SongRows(*(c[:400] for c in rows.columns()))
    inner = FaissSongIndex.from_embeddings(first, vectors[:400])
    index = ScoredIndex.build(inner, scoring=Scoring(k=K_RADIUS, sample=50))
    before = table_by_id(index, rows.ids[:400])
    for start in (400, 401, 410, 450):  # one song, then batches
        stop = {400: 401, 401: 410, 410: 450, 450: 500}[start]
        added = index.add(SongRows(*(c[start:stop] for c in rows.columns())), vectors[start:stop])
        assert added == stop - start
    rebuilt = ScoredIndex.build(
        FaissSongIndex.from_embeddings(rows, vectors), scoring=Scoring(k=K_RADIUS, sample=50)
    )
    got, expected = table_by_id(index, rows.ids), table_by_id(rebuilt, rows.ids)
    np.testing.assert_allclose(got[:, [RADIUS, KTH]], expected[:, [RADIUS, KTH]], rtol=1e-12)
    # The mutual-proximity sample is fixed at build: the first 400 songs' Gaussians hold.
    np.testing.assert_allclose(got[:400, [MEAN, SD]], before[:, [MEAN, SD]], rtol=1e-12)
    assert not np.allclose(before[:, RADIUS], got[:400, RADIUS])  # some radii did move


class NumpySongIndex:
    """A brute-force backend with `remove`, as the library branch adds to the Protocol."""

    kind = "numpy"

    def __init__(self, rows: SongRows, vectors: np.ndarray):
        self._ids = list(map(int, rows.ids))
        self._vectors = {int(i): v for i, v in zip(rows.ids, vectors, strict=True)}

    def __len__(self):
        return len(self._ids)

    def __contains__(self, song_id):
        return song_id in self._vectors

    def ids(self):
        return np.array(self._ids, dtype=np.int64)

    def embeddings_of(self, song_ids):
        return np.array([self._vectors[int(i)] for i in song_ids], dtype=np.float32)

    def embedding_of(self, song_id):
        return self._vectors[song_id]

    def search(self, vectors, *, k, where=None, exclude_song=None):
        ids = np.array([i for i in self._ids if i != exclude_song])
        d = cdist(np.atleast_2d(vectors), self.embeddings_of(ids))
        return [[Neighbour(int(ids[j]), float(row[j])) for j in np.argsort(row)[:k]] for row in d]

    def remove(self, song_ids):
        gone = [int(i) for i in song_ids if int(i) in self._vectors]
        for i in gone:
            del self._vectors[i]
            self._ids.remove(i)
        return len(gone)

    def close(self):
        pass


def test_radii_after_removals_equal_a_full_recomputation():
    rows, vectors = catalogue(300, seed=4)
    index = ScoredIndex.build(
        NumpySongIndex(rows, vectors), scoring=Scoring(k=K_RADIUS), eager=True
    )  # the radii exist before the removals, which must keep them current
    gone = rows.ids[::7]
    assert index.remove(gone) == len(gone)
    keep = ~np.isin(rows.ids, gone)
    rebuilt = ScoredIndex.build(
        NumpySongIndex(SongRows(*(c[keep] for c in rows.columns())), vectors[keep]),
        scoring=Scoring(k=K_RADIUS),
    )
    got, expected = table_by_id(index, rows.ids[keep]), table_by_id(rebuilt, rows.ids[keep])
    np.testing.assert_allclose(got[:, [RADIUS, KTH]], expected[:, [RADIUS, KTH]], rtol=1e-12)
    assert not any(int(i) in {n.song_id for n in index.search(vectors[0], k=50)[0]} for i in gone)


def test_radii_after_replaces_equal_a_full_recomputation():
    rows, vectors = catalogue(300, seed=6)
    scoring = Scoring(k=K_RADIUS)
    every = np.ones(len(rows), dtype=bool)
    index = fresh_index(rows, vectors, every, scoring)  # radii computed before the replace
    moved, now = np.r_[0:300:9], vectors.copy()
    now[moved] = vectors[moved[::-1]] + 0.05  # each to another song's place, some far
    assert index.replace(SongRows(*(c[moved] for c in rows.columns())), now[moved]) == len(moved)
    got = table_by_id(index, rows.ids)
    expected = table_by_id(fresh_index(rows, now, every, scoring), rows.ids)
    np.testing.assert_allclose(got[:, [RADIUS, KTH]], expected[:, [RADIUS, KTH]], rtol=1e-12)
    before = table_by_id(fresh_index(rows, vectors, every, scoring), rows.ids)
    assert not np.allclose(before[:, RADIUS], got[:, RADIUS])  # the moves mattered


class CountingSearches:
    """A backend wrapper counting the neighbour searches made through it."""

    def __init__(self, inner):
        self._inner = inner
        self.searches = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __len__(self):
        return len(self._inner)

    def __contains__(self, song_id):
        return song_id in self._inner

    def search(self, vectors, **kwargs):
        self.searches += len(np.atleast_2d(vectors))
        return self._inner.search(vectors, **kwargs)


def test_an_l2_index_starts_without_a_pass_over_its_songs_and_l2_searches_need_none():
    rows, vectors = catalogue(300, seed=5)
    backend = CountingSearches(FaissSongIndex.from_embeddings(rows, vectors))
    index = ScoredIndex.build(backend, scoring=Scoring(k=K_RADIUS))
    assert backend.searches == 0 and not index.has_neighbourhoods
    index.search(vectors[:4], k=5)
    index.search(vectors[9], k=5, exclude_song=int(rows.ids[9]), scoring="l2")
    assert backend.searches == 5 and not index.has_neighbourhoods  # the queries' own only


def test_an_index_serving_another_scoring_computes_its_neighbourhoods_at_build():
    rows, vectors = catalogue(300, seed=5)
    backend = CountingSearches(FaissSongIndex.from_embeddings(rows, vectors))
    index = ScoredIndex.build(backend, scoring=Scoring("local-scaling", k=K_RADIUS))
    assert index.has_neighbourhoods and backend.searches == len(rows)  # one per song


def fresh_index(rows: SongRows, vectors: np.ndarray, keep: np.ndarray, scoring: Scoring):
    """A full recomputation: an index built eagerly over the songs `keep` selects."""
    kept = SongRows(*(c[keep] for c in rows.columns()))
    return ScoredIndex.build(
        FaissSongIndex.from_embeddings(kept, vectors[keep]), scoring=scoring, eager=True
    )


def test_a_search_for_another_scoring_starts_the_build_and_never_computes_it_itself():
    rows, vectors = catalogue(400, seed=6)
    first = SongRows(*(c[:300] for c in rows.columns()))
    backend = CountingSearches(FaissSongIndex.from_embeddings(first, vectors[:300]))
    index = ScoredIndex.build(backend, scoring=Scoring(k=K_RADIUS, sample=80))
    index.add(SongRows(*(c[300:] for c in rows.columns())), vectors[300:])
    gone = rows.ids[::9]
    index.remove(gone)
    assert index.neighbourhood_progress().state == "not-started" and backend.searches == 0
    with pytest.raises(NeighbourhoodsNotReady, match="^local-scaling needs every song's") as e:
        index.search(vectors[1], k=8, scoring="local-scaling")
    assert e.value.scoring == "local-scaling" and e.value.retry_after_s >= 1
    assert index.wait_for_neighbourhoods(timeout_s=120)  # started by that search
    keep = ~np.isin(rows.ids, gone)
    fresh = fresh_index(rows, vectors, keep, Scoring("local-scaling", k=K_RADIUS, sample=80))
    ids = rows.ids[keep]
    np.testing.assert_allclose(table_by_id(index, ids), table_by_id(fresh, ids), rtol=1e-12)
    for name in ("local-scaling", "mutual-proximity"):
        for row in (1, 50, 333):
            got = index.search(vectors[row], k=8, scoring=name)[0]
            expected = fresh.search(vectors[row], k=8, scoring=name)[0]
            assert [n.song_id for n in got] == [n.song_id for n in expected]
    # From then on adds keep them current, as an eager index's are.
    more_rows, more = catalogue(20, seed=7)
    more_rows = SongRows(more_rows.ids + 10_000, *more_rows.columns()[1:])
    index.add(more_rows, more)
    assert table_by_id(index, more_rows.ids)[:, RADIUS].min() > 0


class PausedBuild:
    """`after_chunk` for `start_neighbourhoods`: the build waits after its chunk that
    ends with `done` songs until released, so a test acts while it is under way."""

    def __init__(self, done: int):
        self.done = done
        self.paused = threading.Event()
        self.release = threading.Event()

    def __call__(self, done: int) -> None:
        if done == self.done:
            self.paused.set()
            self.release.wait()


def test_adds_removals_and_replaces_during_a_background_build_end_with_a_full_recomputation(
    monkeypatch,
):
    monkeypatch.setattr(scored, "BUILD_BATCH", 64)  # five chunks for 300 songs
    rows, vectors = catalogue(400, seed=8)
    scoring = Scoring(k=K_RADIUS, sample=80)
    first = np.arange(400) < 300
    then_rows = SongRows(*(c[first] for c in rows.columns()))
    backend = CountingSearches(FaissSongIndex.from_embeddings(then_rows, vectors[first]))
    index = ScoredIndex.build(backend, scoring=scoring)
    leaving = np.r_[3:120:7, 130:300:11, 305:400:13]
    # Songs computed already and not yet, and one added during the build, move elsewhere.
    moved, now = np.setdiff1d(np.r_[2:120:10, 140:300:20, 301], leaving), vectors.copy()
    now[moved] = vectors[moved[::-1]] + 0.05
    pause = PausedBuild(done=128)
    index.start_neighbourhoods(after_chunk=pause)
    try:
        assert pause.paused.wait(timeout=120)
        assert index.neighbourhood_progress() == NeighbourhoodProgress("building", 128, 300)
        searches = backend.searches
        with pytest.raises(NeighbourhoodsNotReady, match="128 of 300 computed"):
            index.search(vectors[1], k=8, scoring="mutual-proximity")
        assert backend.searches == searches  # the request searched nothing itself
        # Songs computed already (rows 0..127) and not yet, old and new, leave; new ones come.
        new = SongRows(*(c[300:] for c in rows.columns()))
        index.add(new, vectors[300:])
        gone = rows.ids[leaving]
        index.remove(gone)
        index.replace(SongRows(*(c[moved] for c in rows.columns())), now[moved])
    finally:
        pause.release.set()
    assert index.wait_for_neighbourhoods(timeout_s=120)
    keep = ~np.isin(rows.ids, gone)
    ids = rows.ids[keep]
    got = table_by_id(index, ids)
    fresh = table_by_id(fresh_index(rows, now, keep, scoring), ids)
    np.testing.assert_allclose(got[:, [RADIUS, KTH]], fresh[:, [RADIUS, KTH]], rtol=1e-12)
    # The mutual-proximity sample is the catalogue's when the build began, as for an index
    # built then and changed afterwards (the upkeep tests above check that path).
    then = fresh_index(rows, vectors, first, scoring)
    then.add(new, vectors[300:])
    then.remove(gone)
    then.replace(SongRows(*(c[moved] for c in rows.columns())), now[moved])
    np.testing.assert_allclose(got, table_by_id(then, ids), rtol=1e-12)
    moved = table_by_id(fresh_index(rows, vectors, first, scoring), rows.ids[first & keep])
    assert not np.allclose(moved[:, RADIUS], got[: len(moved), RADIUS])  # the changes mattered


def test_a_failed_build_is_reported_and_the_next_search_starts_it_again():
    rows, vectors = catalogue(120, seed=9)
    backend = CountingSearches(FaissSongIndex.from_embeddings(rows, vectors))
    index = ScoredIndex.build(backend, scoring=Scoring(k=K_RADIUS))
    real_search = backend.search

    def broken(vectors, **kwargs):
        raise RuntimeError("the backend went away")

    backend.search = broken
    index.start_neighbourhoods()
    assert not index.wait_for_neighbourhoods(timeout_s=120)
    progress = index.neighbourhood_progress()
    assert progress.state == "failed" and "RuntimeError: the backend went away" in progress.error
    backend.search = real_search
    with pytest.raises(NeighbourhoodsNotReady, match="the last computation failed .*the backend"):
        index.search(vectors[0], k=5, scoring="local-scaling")
    assert index.wait_for_neighbourhoods(timeout_s=120)
    assert index.neighbourhood_progress() == NeighbourhoodProgress("ready", 120, 120)
    expected = fresh_index(rows, vectors, np.ones(120, bool), Scoring(k=K_RADIUS))
    np.testing.assert_allclose(
        table_by_id(index, rows.ids), table_by_id(expected, rows.ids), rtol=1e-12
    )


def test_the_computed_table_is_handed_on_with_its_songs_in_row_order():
    rows, vectors = catalogue(150, seed=10)
    handed = []
    index = ScoredIndex.build(
        FaissSongIndex.from_embeddings(rows, vectors),
        scoring=Scoring(k=K_RADIUS),
        on_computed=lambda ids, table: handed.append((ids, table)),
    )
    index.remove(rows.ids[:5])
    index.start_neighbourhoods()
    assert index.wait_for_neighbourhoods(timeout_s=120)
    ((ids, table),) = handed
    np.testing.assert_array_equal(ids, rows.ids[5:])
    np.testing.assert_array_equal(table, table_by_id(index, rows.ids[5:]))


@pytest.mark.parametrize("name", SCORINGS)
def test_a_song_removed_while_its_search_reads_the_candidates_is_left_out(name):
    # The follower or a DELETE may remove a song between the re-rank's filter of the
    # candidates and its reads of their vectors: the search answers without it. FAISS's
    # answers need no read; a backend whose distances are not exact (Milvus's) is read.
    rows, vectors = catalogue(60, seed=5)
    backend = FaissSongIndex.from_embeddings(rows, vectors)
    backend.exact_distances = False  # type: ignore[misc]  # as Milvus: its candidates are read
    index = ScoredIndex.build(backend, scoring=Scoring(name=name, k=K_RADIUS))
    nearest = index.search(vectors[0], k=5, scoring=name)[0]
    victim = nearest[1].song_id
    inner, reads = index.backend, []
    real_read = inner.embeddings_of

    def read_then_lose_the_victim(song_ids):
        if not reads:  # the first read: the removal lands in between
            reads.append(song_ids)
            index.remove(np.array([victim]))
        return real_read(song_ids)

    inner.embeddings_of = read_then_lose_the_victim
    found = index.search(vectors[0], k=5, scoring=name)[0]
    inner.embeddings_of = real_read
    assert reads and victim in reads[0]  # the removal did land inside the search
    assert victim not in [n.song_id for n in found] and len(found) == 5


@pytest.mark.parametrize("where", FILTERS)
def test_l2_over_its_short_pool_is_the_exact_top_k_of_a_catalogue_larger_than_it(where):
    """l2 fetches k plus a margin, not the scorings' pool: on 1,500 songs, with copies of
    one song moved by float32 ulps (ties the float32 scan cannot order), its top k is
    still the exact float64 ranking of every song."""
    rows, vectors = catalogue(1_500, dim=16, seed=3)
    # Each coordinate one float32 ulp up, down or unchanged (float32 targets: a float64
    # nextafter would move by a float64 ulp, lost again when stored as float32).
    steps = np.sign(np.random.default_rng(4).integers(-3, 4, size=(30, 16))).astype(np.float32)
    vectors[100:130] = np.nextafter(vectors[0], vectors[0] + steps)
    assert len(np.unique(vectors[100:130], axis=0)) > 1  # near-ties, not exact copies
    index = ScoredIndex.build(FaissSongIndex.from_embeddings(rows, vectors), scoring=Scoring())
    assert Scoring().pool_for(7) < len(rows) // 10  # the pool covers a sliver of the songs
    for row in (0, 101, 17, 900):
        got = index.search(vectors[row], k=7, where=where, exclude_song=int(rows.ids[row]))[0]
        allowed = allowed_by(rows, where, exclude_row=row)
        expected = reference_top(rows, vectors, vectors[row], name="l2", k=7, allowed=allowed)
        assert [n.song_id for n in got] == expected
