"""Every index backend implements the SongIndex Protocol and behaves alike on the same songs."""

import numpy as np
import pytest

from app.catalogue.rows import SongRows
from app.index.faiss_index import FaissSongIndex
from app.index.protocol import SongFilter, SongIndex

N, DIM = 300, 16


@pytest.fixture(scope="module")
def songs():
    rng = np.random.default_rng(11)
    ids = rng.choice(10**6, size=N, replace=False).astype(np.int64)
    rows = SongRows.from_columns(
        ids, rng.integers(0, 40, N), rng.choice(["Rock", "Pop", None], N), [None] * N, [None] * N
    )
    return rows, rng.normal(size=(N, DIM)).astype(np.float32)


@pytest.fixture(params=["faiss", "milvus"])
def index(request, songs, tmp_path_factory):
    rows, vectors = songs
    if request.param == "faiss":
        built: SongIndex = FaissSongIndex(dim=DIM)
    else:
        from app.index.milvus import MilvusSongIndex

        uri = str(tmp_path_factory.mktemp("milvus-protocol") / "milvus.db")
        built = MilvusSongIndex(DIM, uri=uri, collection="protocol")
    built.add(rows, vectors)
    yield built
    built.close()
    built.close()  # idempotent


def test_each_backend_satisfies_the_protocol(index):
    assert isinstance(index, SongIndex) and isinstance(index.kind, str)


def test_each_backend_holds_the_songs_it_was_given(index, songs):
    rows, vectors = songs
    assert len(index) == N and sorted(index.ids().tolist()) == sorted(rows.ids.tolist())
    assert int(rows.ids[5]) in index and -1 not in index
    assert index.missing(np.array([rows.ids[0], -1, -2])).tolist() == [-1, -2]
    np.testing.assert_allclose(index.embedding_of(int(rows.ids[7])), vectors[7], atol=1e-6)
    assert index.add(rows, vectors) == 0  # present ids are skipped


def test_each_backend_returns_the_brute_force_neighbours_that_pass_the_filter(index, songs):
    rows, vectors = songs
    query, k = 3, 8
    passing = (rows.genres == "Rock") & (rows.ids != rows.ids[query])
    distances = np.sqrt(((vectors - vectors[query]) ** 2).sum(axis=1))
    order = np.flatnonzero(passing)[np.argsort(distances[passing], kind="stable")][:k]
    found = index.search(
        vectors[query], k=k, where=SongFilter(genre="Rock"), exclude_song=int(rows.ids[query])
    )[0]
    assert [n.song_id for n in found] == rows.ids[order].tolist()
    np.testing.assert_allclose([n.distance for n in found], distances[order], rtol=1e-4)


def test_each_backend_replaces_a_song_in_place_and_adds_one_it_lacks(index, songs):
    rows, vectors = songs
    song = int(rows.ids[4])
    far = np.full((1, DIM), 30.0, dtype=np.float32)
    moved = SongRows.from_columns([song], [rows.artist_ids[4]], ["Folk"], [None], [None])
    assert index.replace(moved, far) == 1
    assert len(index) == N
    found = index.search(far, k=1, where=SongFilter(genre="Folk"))[0]
    assert [n.song_id for n in found] == [song] and found[0].distance == pytest.approx(0, abs=1e-3)
    assert song not in {n.song_id for n in index.search(vectors[4], k=5)[0]}
    new = SongRows.from_columns([-7], [1], ["Folk"], [None], [None])
    assert index.replace(new, far + 1) == 0 and -7 in index and len(index) == N + 1
