"""The Milvus backend (on Milvus Lite) against the FAISS backend on the same catalogue."""

import numpy as np
import pytest
from pydantic import ValidationError

from app.catalogue.rows import SongRows
from app.config import Settings
from app.index.faiss_index import FaissSongIndex
from app.index.milvus import MAX_TOPK, MilvusIndexError, MilvusSongIndex
from app.index.protocol import Near, SongFilter, SongIndex

# Places to search near: a city, across the antimeridian, by the north pole, the whole globe.
PLACES = [
    Near(40.71, -74.01, 800.0),
    Near(-5.0, 179.8, 2500.0),
    Near(88.5, 30.0, 1500.0),
    Near(-60.0, -170.0, 4000.0),
    Near(10.0, 10.0, 20_038.0),
]


@pytest.fixture(scope="module")
def rows(catalogue) -> SongRows:
    """The catalogue's songs; a third of them moved to random places all over the globe."""
    tracks = catalogue.tracks
    rng = np.random.default_rng(7)
    lats, lons = tracks["latitude"].to_numpy(), tracks["longitude"].to_numpy()
    moved = rng.random(len(tracks)) < 1 / 3
    lats = np.where(moved, np.degrees(np.arcsin(rng.uniform(-1, 1, len(tracks)))), lats)
    lons = np.where(moved, rng.uniform(-180, 180, len(tracks)), lons)
    genres = [g if isinstance(g, str) else None for g in tracks["genre"]]
    return SongRows(
        ids=catalogue.track_ids,
        artist_ids=catalogue.artist_ids,
        genres=np.asarray(genres, dtype=object),
        latitudes=lats.astype(np.float64),
        longitudes=lons.astype(np.float64),
    )


@pytest.fixture(scope="module")
def embeddings(catalogue, bundle) -> np.ndarray:
    return bundle.embed(catalogue.features)


@pytest.fixture(scope="module")
def faiss_index(rows, embeddings) -> SongIndex:
    index = FaissSongIndex(dim=embeddings.shape[1])
    index.add(rows, embeddings)
    return index


@pytest.fixture(scope="module")
def milvus_index(rows, embeddings, milvus_lite_uri):
    index = MilvusSongIndex(embeddings.shape[1], uri=milvus_lite_uri, collection="songs")
    assert index.add(rows, embeddings) == len(rows)
    yield index
    index.close()


def assert_same_neighbours(milvus, faiss, tol=1e-4):
    """Same songs in the same order, except that songs at equal distances may swap."""
    assert len(milvus) == len(faiss)
    np.testing.assert_allclose(
        [n.distance for n in milvus], [n.distance for n in faiss], rtol=1e-5, atol=tol
    )
    got = {n.song_id: n.distance for n in milvus}
    for position, expected in enumerate(faiss):
        if milvus[position].song_id == expected.song_id:
            continue
        if expected.song_id in got:  # swapped with a song at the same distance
            assert abs(got[expected.song_id] - expected.distance) < tol
        else:  # a tie at the k-th place, broken the other way
            assert abs(milvus[-1].distance - expected.distance) < tol


def compare(milvus_index, faiss_index, queries, *, k, where=None, exclude_song=None):
    milvus = milvus_index.search(queries, k=k, where=where, exclude_song=exclude_song)
    faiss = faiss_index.search(queries, k=k, where=where, exclude_song=exclude_song)
    assert len(milvus) == len(faiss) == len(np.atleast_2d(queries))
    for got, expected in zip(milvus, faiss, strict=True):
        assert_same_neighbours(got, expected)
    return milvus


def test_unfiltered_searches_equal_faiss_flat(milvus_index, faiss_index, embeddings):
    queries = embeddings[::97]
    for k in (1, 10, 300):
        found = compare(milvus_index, faiss_index, queries, k=k)
        assert all(len(neighbours) == k for neighbours in found)


def test_the_query_song_and_an_artist_are_excluded_like_faiss(
    milvus_index, faiss_index, embeddings, rows
):
    song, artist = int(rows.ids[40]), int(rows.artist_ids[40])
    found = compare(milvus_index, faiss_index, embeddings[40], k=20, exclude_song=song)
    assert song not in [n.song_id for n in found[0]]
    where = SongFilter(exclude_artist=artist)
    found = compare(milvus_index, faiss_index, embeddings[40], k=20, where=where)
    artist_of = dict(zip(rows.ids.tolist(), rows.artist_ids.tolist(), strict=True))
    assert all(artist_of[n.song_id] != artist for n in found[0])


def test_every_genre_filter_equals_faiss(milvus_index, faiss_index, embeddings, rows):
    genre_of = dict(zip(rows.ids.tolist(), rows.genres.tolist(), strict=True))
    for genre in sorted({g for g in rows.genres if g is not None}):
        found = compare(
            milvus_index, faiss_index, embeddings[:3], k=8, where=SongFilter(genre=genre)
        )
        n_matching = sum(g == genre for g in rows.genres)
        # k songs come back whenever k songs match: the filter is inside the search
        assert all(len(neighbours) == min(8, n_matching) for neighbours in found)
        assert all(genre_of[n.song_id] == genre for ns in found for n in ns)


@pytest.mark.parametrize("place", PLACES, ids=["city", "antimeridian", "pole", "south", "globe"])
def test_near_filters_equal_faiss(milvus_index, faiss_index, embeddings, place):
    where = SongFilter(near=place)
    for k in (5, 200):
        compare(milvus_index, faiss_index, embeddings[::300], k=k, where=where)


def test_near_searches_that_need_the_exact_id_list_still_equal_faiss(
    rows, embeddings, faiss_index, milvus_lite_uri
):
    # Fetching only k box candidates leaves most queries short of k songs inside the
    # circle, so they are answered by the second pass over the circle's exact ids.
    index = MilvusSongIndex(
        embeddings.shape[1], uri=milvus_lite_uri, collection="songs", near_overfetch=1
    )
    try:
        for place in PLACES[:3]:
            where = SongFilter(near=place, exclude_artist=int(rows.artist_ids[0]))
            compare(index, faiss_index, embeddings[::150], k=30, where=where, exclude_song=2)
    finally:
        index.close()


def test_filters_combine_like_faiss(milvus_index, faiss_index, embeddings):
    where = SongFilter(exclude_artist=5, genre="Rock", near=Near(40.0, -80.0, 3000.0))
    compare(milvus_index, faiss_index, embeddings[:10], k=15, where=where)


def test_adding_is_idempotent_and_embeddings_read_back(milvus_index, rows, embeddings):
    assert len(milvus_index) == len(rows)
    assert milvus_index.add(rows, embeddings) == 0
    assert len(milvus_index) == len(rows)
    assert set(milvus_index.ids().tolist()) == set(rows.ids.tolist())
    song = int(rows.ids[11])
    assert song in milvus_index and -1 not in milvus_index
    np.testing.assert_array_equal(milvus_index.embedding_of(song), embeddings[11])
    with pytest.raises(KeyError):
        milvus_index.embedding_of(-1)


def test_a_genre_title_with_quotes_and_backslashes_is_matched_literally(milvus_lite_uri):
    index = MilvusSongIndex(2, uri=milvus_lite_uri, collection="odd_genres")
    odd = 'Rock "n" Roll \\ Café'
    rows = SongRows(
        ids=np.array([1, 2, 3]),
        artist_ids=np.array([1, 1, 2]),
        genres=np.array([odd, "Rock", None], dtype=object),
        latitudes=np.full(3, np.nan),
        longitudes=np.full(3, np.nan),
    )
    index.add(rows, np.array([[0, 1], [0, 2], [0, 3]], dtype=np.float32))
    (found,) = index.search(np.zeros(2), k=3, where=SongFilter(genre=odd))
    assert [n.song_id for n in found] == [1]
    assert found[0].distance == pytest.approx(1.0)
    index.close()


def test_k_beyond_milvus_topk_limit_is_refused_by_name(milvus_index, embeddings):
    with pytest.raises(ValueError, match="16384"):
        milvus_index.search(embeddings[0], k=MAX_TOPK + 1)


def test_a_collection_of_another_dimension_is_refused(milvus_lite_uri, milvus_index):
    with pytest.raises(MilvusIndexError, match="dimensional"):
        MilvusSongIndex(3, uri=milvus_lite_uri, collection="songs")


def test_an_unreachable_milvus_server_is_named(tmp_path):
    with pytest.raises(MilvusIndexError, match="127.0.0.1:9"):
        MilvusSongIndex(2, uri="http://127.0.0.1:9", collection="x", connect_timeout_s=1.0)


@pytest.mark.parametrize(
    "overrides",
    [{"milvus_uri": "data/milvus"}, {"milvus_collection": "has-dash"}, {"index_backend": "qdrant"}],
)
def test_bad_milvus_settings_are_refused(overrides):
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **overrides)


def test_a_scoring_pool_past_milvus_bound_is_refused_naming_it():
    with pytest.raises(ValidationError, match="at most 16,384 with MUSICSIM_INDEX_BACKEND=milvus"):
        Settings(_env_file=None, index_backend="milvus", scoring_pool=MAX_TOPK + 1)
    assert Settings(_env_file=None, index_backend="milvus", scoring_pool=MAX_TOPK)
    assert Settings(_env_file=None, index_backend="faiss", scoring_pool=MAX_TOPK + 1)
