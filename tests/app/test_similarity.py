"""No answer holds two copies of one recording, nor a copy of the query song itself.

A catalogue with planted copies: twelve songs with song A's exact features (other
titles and artists: more than the spare candidates a search asks for), and one
song with song B's title and artist (cased and punctuated differently) but other
features. GET /songs/{id}/similar, POST
/songs/similar and the batch route are checked against those known groups and
against a brute-force pairwise check of every answer, and still return k results.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.spatial.distance import pdist

from app.catalogue.rows import SongRows
from app.index.faiss_index import FaissSongIndex
from app.index.scored import ScoredIndex
from app.similarity import search_distinct
from training.evaluation.scoring import Scoring

K = 10
COPIES = 12  # > app.similarity.EXTRA_CANDIDATES: a first pool of k + 8 falls short


def _plain(text: str) -> str:
    """The test's own folding of a title: letters and digits only, any case."""
    return re.sub(r"[^0-9a-z]", "", text.casefold())


@pytest.fixture
def planted(client, catalogue):
    """(client, groups): each group is the ids of one recording's copies."""
    a, b = (int(i) for i in catalogue.track_ids[:2])
    song_b = client.get(f"/songs/{b}").json()
    copies_of_a = [
        client.post(
            "/songs",
            json={"title": f"Copy {n}", "artist": f"Copier {n}", "features": feats},
        ).json()["id"]
        for n, feats in enumerate([catalogue.features[0].tolist()] * COPIES)
    ]
    renamed_b = client.post(
        "/songs",
        json={
            "title": f"  {song_b['title'].upper()}!! ",
            "artist": song_b["artist"]["id"],
            "features": (catalogue.features[700] * 1.05).tolist(),
        },
    ).json()["id"]
    return client, [{a, *copies_of_a}, {b, renamed_b}]


def _check_distinct(client, results, *, query_group=frozenset()):
    ids = [r["id"] for r in results]
    assert len(set(ids)) == len(ids)
    index = client.app.state.service.index
    vectors = index.embeddings_of(np.asarray(ids, dtype=np.int64)).astype(np.float64)
    # every pair's distance, each computed directly (a 1,000 x 1,000 x dim broadcast
    # took seconds per answer)
    assert pdist(vectors).min() > 1e-4, "two results at distance ~0"
    names = [(_plain(r["title"] or ""), r["artist"]["name"].casefold()) for r in results]
    assert len(set(names)) == len(names), "two results with one title and artist"
    assert not set(ids) & set(query_group)


def test_similar_songs_hold_one_copy_of_each_recording_and_none_of_the_query(planted, catalogue):
    client, groups = planted
    queries = [*groups[0], *groups[1], *(int(i) for i in catalogue.track_ids[2:40])]
    for song in queries:
        results = client.get(f"/songs/{song}/similar", params={"k": K}).json()["results"]
        assert len(results) == K
        own = next((g for g in groups if song in g), frozenset())
        _check_distinct(client, results, query_group=own)
        for group in groups:
            assert len(group & {r["id"] for r in results}) <= 1


def test_posted_features_find_one_copy_of_a_recording_and_still_k_results(planted, catalogue):
    client, groups = planted
    body = {"features": catalogue.features[0].tolist(), "k": K}
    results = client.post("/songs/similar", json=body).json()["results"]
    assert len(results) == K
    _check_distinct(client, results)
    found = groups[0] & {r["id"] for r in results}
    assert len(found) == 1 and results[0]["id"] in groups[0]  # the recording itself, once
    items = [{"features": catalogue.features[i].tolist()} for i in (0, 1, 700, 5)]
    batch = client.post("/songs/similar/batch", json={"items": items, "k": K}).json()["results"]
    for answer in batch:
        assert len(answer["results"]) == K
        _check_distinct(client, answer["results"])
        for group in groups:
            assert len(group & {r["id"] for r in answer["results"]}) <= 1


def test_a_large_k_still_returns_k_distinct_recordings(planted, catalogue):
    client, groups = planted
    k = 1000  # of 1,513 songs, 1,500 recordings
    song = int(catalogue.track_ids[3])
    results = client.get(f"/songs/{song}/similar", params={"k": k}).json()["results"]
    assert len(results) == k
    _check_distinct(client, results)
    body = {"features": catalogue.features[0].tolist(), "k": k}
    posted = client.post("/songs/similar", json=body).json()["results"]
    assert len(posted) == k
    _check_distinct(client, posted)


def test_a_catalogue_smaller_than_k_answers_every_distinct_recording_once():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    vectors[4:] = vectors[3]  # songs 14 and 15: copies of song 13
    ids = np.arange(10, 16)
    rows = SongRows.from_columns(ids, ids, [None] * 6, [None] * 6, [None] * 6)
    index = ScoredIndex.build(FaissSongIndex.from_embeddings(rows, vectors), scoring=Scoring())
    keys = {int(i): f"recording {min(int(i), 13)}" for i in ids}

    def keys_of(some):
        return {int(i): keys[int(i)] for i in some}

    found = search_distinct(index, vectors[0], keys_of=keys_of, k=K)
    assert sorted(n.song_id for n in found[0]) == [10, 11, 12, 13]
    others = search_distinct(index, vectors[1], keys_of=keys_of, k=K, exclude_song=11)
    assert sorted(n.song_id for n in others[0]) == [10, 12, 13]
