"""Coalesced flat queries answer exactly as single ones, under many threads."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from app.catalogue.rows import SongRows
from app.index.coalesce import Coalescer
from app.index.faiss_index import FaissSongIndex
from app.index.kinds import IndexSpec
from app.index.protocol import Near, SongFilter

N_SONGS, DIM, THREADS, PER_THREAD = 8_000, 40, 16, 25
GENRES = np.array(["Rock", "Jazz", "Folk", "Rare"], dtype=object)


@pytest.fixture(scope="module")
def songs():
    rng = np.random.default_rng(21)
    centres = rng.normal(size=(30, DIM)) * 3
    vectors = (centres[rng.integers(0, 30, N_SONGS)] + rng.normal(size=(N_SONGS, DIM))).astype(
        np.float32
    )
    rows = SongRows(
        ids=np.arange(N_SONGS, dtype=np.int64) * 2 + 1,
        artist_ids=rng.integers(0, 500, N_SONGS),
        genres=GENRES[rng.choice(len(GENRES), N_SONGS, p=[0.5, 0.3, 0.18, 0.02])],
        latitudes=rng.uniform(-60, 60, N_SONGS),
        longitudes=rng.uniform(-180, 180, N_SONGS),
    )
    return rows, vectors


def random_queries(rows, vectors, n, seed):
    """(vector, k, filter, excluded song) with every kind of filter, sparse ones too."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        row = int(rng.integers(0, len(rows)))
        where = [
            SongFilter(),
            SongFilter(genre=str(rng.choice(GENRES))),
            SongFilter(exclude_artist=int(rows.artist_ids[row])),
            SongFilter(near=Near(float(rng.uniform(-50, 50)), float(rng.uniform(-170, 170)), 2500)),
        ][int(rng.integers(0, 4))]
        vector = vectors[row] + rng.normal(scale=0.3, size=DIM).astype(np.float32)
        exclude = int(rows.ids[row]) if rng.random() < 0.5 else None
        out.append((vector, int(rng.integers(1, 30)), where, exclude))
    return out


def answers(index, queries):
    return [
        [(n.song_id, n.distance) for n in index.search(v, k=k, where=w, exclude_song=e)[0]]
        for v, k, w, e in queries
    ]


def test_coalesced_queries_under_many_threads_answer_as_single_ones(songs):
    rows, vectors = songs
    single = FaissSongIndex.from_embeddings(rows, vectors, IndexSpec(coalesce_wait_ms=0))
    coalesced = FaissSongIndex.from_embeddings(rows, vectors, IndexSpec(coalesce_wait_ms=2))
    assert single.coalescer is None and coalesced.coalescer is not None
    work = [random_queries(rows, vectors, PER_THREAD, seed) for seed in range(THREADS)]
    expected = [answers(single, queries) for queries in work]
    start = threading.Barrier(THREADS)

    def run(queries):
        start.wait()  # all threads at once, so that queries overlap
        return answers(coalesced, queries)

    with ThreadPoolExecutor(THREADS) as pool:
        found = list(pool.map(run, work))
    assert found == expected
    stats = coalesced.coalescer
    assert stats.queries == THREADS * PER_THREAD
    assert stats.batches < stats.queries  # batches of several queries did run


def test_a_failing_batch_fails_every_caller_in_it():
    calls = []

    def run_batch(items):
        calls.append(list(items))
        raise RuntimeError("scan failed")

    coalescer = Coalescer(run_batch, wait_s=0.05)
    barrier = threading.Barrier(4)

    def submit(item):
        barrier.wait()
        with pytest.raises(RuntimeError, match="scan failed"):
            coalescer.submit(item)
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(submit, range(4)))
    assert sorted(i for batch in calls for i in batch) == [0, 1, 2, 3]


def test_each_caller_gets_its_own_answer_in_order_of_the_batch():
    coalescer = Coalescer(lambda items: [i * 10 for i in items], wait_s=0.01, max_batch=3)
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(coalescer.submit, range(40))) == [i * 10 for i in range(40)]
    assert coalescer.queries == 40


def test_a_wait_longer_than_the_bound_is_refused():
    with pytest.raises(ValueError, match="coalesce_wait_ms"):
        IndexSpec(coalesce_wait_ms=50)
