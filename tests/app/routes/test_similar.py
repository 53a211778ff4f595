"""Neighbour queries against a brute-force numpy ranking over the same embeddings."""

import math

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from training.artefacts import load_bundle, save_bundle
from training.config import TrainConfig
from training.train import train_on_catalogue


@pytest.fixture
def client(read_only_client):
    """The queries here only read: one service per database and index backend (Milvus on
    Milvus Lite) answers all of them."""
    return read_only_client


@pytest.fixture(scope="module")
def embedded(catalogue, bundle):
    """Brute-force reference: every catalogue song's embedding, by track id."""
    return catalogue.track_ids, bundle.embed(catalogue.features)


def brute_force(embedded, vector, k, allowed=None):
    ids, emb = embedded
    d = np.sqrt(((emb.astype(np.float64) - vector) ** 2).sum(1))
    if allowed is not None:
        d[~allowed] = np.inf
    order = np.argsort(d, kind="stable")[:k]
    return [int(ids[i]) for i in order if np.isfinite(d[i])], d[order]


def great_circle_km(lat1, lon1, lat2, lon2):
    """Spherical law of cosines: an independent formula from the service's haversine."""
    p1, p2, dl = map(math.radians, (lat1, lat2, lon2 - lon1))
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return 6371.0088 * math.acos(max(-1.0, min(1.0, c)))


def assert_same_ranking(results, expected_ids, expected_d):
    got = [r["id"] for r in results]
    # Near-equal distances may swap under float32 arithmetic; compare as sets plus distances.
    assert len(got) == len(expected_ids)
    np.testing.assert_allclose(
        [r["distance"] for r in results], expected_d[: len(got)], rtol=1e-4, atol=1e-5
    )
    assert len(set(got) ^ set(expected_ids)) <= 2


def test_similar_songs_equal_a_brute_force_ranking(client, catalogue, embedded):
    song = int(catalogue.track_ids[17])
    body = client.get(f"/songs/{song}/similar", params={"k": 10}).json()
    assert body["query"]["id"] == song
    ids, emb = embedded
    allowed = ids != song
    expected_ids, d = brute_force(embedded, emb[17], 10, allowed)
    assert_same_ranking(body["results"], expected_ids, d)
    distances = [r["distance"] for r in body["results"]]
    assert distances == sorted(distances)


def test_similar_songs_exclude_the_query_song(client, catalogue):
    song = int(catalogue.track_ids[3])
    results = client.get(f"/songs/{song}/similar", params={"k": 50}).json()["results"]
    assert song not in [r["id"] for r in results] and len(results) == 50


def test_other_artists_only_filter(client, catalogue, embedded):
    i = 40
    song, artist = int(catalogue.track_ids[i]), int(catalogue.artist_ids[i])
    params = {"k": 20, "exclude_same_artist": "true"}
    results = client.get(f"/songs/{song}/similar", params=params).json()["results"]
    assert all(r["artist"]["id"] != artist for r in results)
    expected_ids, d = brute_force(embedded, embedded[1][i], 20, catalogue.artist_ids != artist)
    assert_same_ranking(results, expected_ids, d)


def test_genre_filter_returns_k_songs_of_that_genre(client, catalogue, embedded):
    genres = catalogue.tracks["genre"].to_numpy()
    rare = catalogue.tracks["genre"].value_counts().index[-1]  # the smallest genre
    k = min(5, int((genres == rare).sum()))
    song = int(catalogue.track_ids[0])
    results = client.get(f"/songs/{song}/similar", params={"k": k, "genre": rare}).json()["results"]
    assert len(results) == k and all(r["genre"] == rare for r in results)
    allowed = (genres == rare) & (catalogue.track_ids != song)
    expected_ids, d = brute_force(embedded, embedded[1][0], k, allowed)
    assert_same_ranking(results, expected_ids, d)


def test_near_filter_keeps_only_artists_within_the_radius(client, catalogue):
    located = catalogue.tracks.dropna(subset=["latitude"])
    lat, lon = located["latitude"].iloc[0], located["longitude"].iloc[0]
    within = [
        tid
        for tid, row in located.iterrows()
        if great_circle_km(lat, lon, row["latitude"], row["longitude"]) <= 500
    ]
    song = int(catalogue.track_ids[5])
    params = {"k": 1000, "near": f"{lat},{lon}", "radius_km": 500}
    results = client.get(f"/songs/{song}/similar", params=params).json()["results"]
    assert sorted(r["id"] for r in results) == sorted(set(within) - {song})


def test_posted_features_find_their_own_song_first(client, catalogue, embedded):
    features = catalogue.features[25].tolist()
    body = client.post("/songs/similar", json={"features": features, "k": 5}).json()
    assert body["query"] is None
    assert body["results"][0]["id"] == int(catalogue.track_ids[25])
    assert body["results"][0]["distance"] == pytest.approx(0.0, abs=1e-3)
    expected_ids, d = brute_force(embedded, embedded[1][25], 5)
    assert_same_ranking(body["results"], expected_ids, d)


def test_batch_answers_each_vector_in_order(client, catalogue):
    items = [{"features": catalogue.features[i].tolist()} for i in (1, 2, 3)]
    body = client.post("/songs/similar/batch", json={"items": items, "k": 3}).json()
    firsts = [r["results"][0]["id"] for r in body["results"]]
    assert firsts == [int(catalogue.track_ids[i]) for i in (1, 2, 3)]


def test_posted_features_accept_filters(client, catalogue):
    artist = int(catalogue.artist_ids[25])
    body = {"features": catalogue.features[25].tolist(), "k": 5, "exclude_artist": artist}
    results = client.post("/songs/similar", json=body).json()["results"]
    assert len(results) == 5 and all(r["artist"]["id"] != artist for r in results)


@pytest.fixture(scope="module")
def saturated_bundle_dir(catalogue, tmp_path_factory):
    """A bundle whose embeddings saturate: the output layer scaled up, so squared norms
    come near the 518 maximum (where float32 distances cancel) while most coordinates
    stay short of ±1 (so their low bits depend on how the product was computed)."""
    run = train_on_catalogue(catalogue, TrainConfig(epochs=1, seed=0))
    with torch.no_grad():
        run.model.net[-2].weight.mul_(24.0)
        run.model.net[-2].bias.mul_(24.0)
    out = tmp_path_factory.mktemp("models") / "saturated"
    return save_bundle(run, out_dir=out, data_fingerprint=catalogue.fingerprint)


def test_every_song_posted_with_its_own_features_is_first_at_distance_exactly_zero(
    database_url, saturated_bundle_dir, tmp_path, catalogue
):
    embeddings = load_bundle(saturated_bundle_dir).embed(catalogue.features).astype(np.float64)
    assert (embeddings**2).sum(axis=1).mean() > 450  # saturated, as the catalogue
    assert len(np.unique(catalogue.features, axis=0)) == len(catalogue.features)  # no twins
    settings = Settings(
        model_dir=saturated_bundle_dir,
        database_url=database_url,
        index_cache_dir=tmp_path / "index-cache",
        _env_file=None,
    )
    wrong = []
    with TestClient(create_app(settings)) as client:
        for song, features in zip(catalogue.track_ids, catalogue.features, strict=True):
            body = {"features": features.tolist(), "k": 2}
            first = client.post("/songs/similar", json=body).json()["results"][0]
            if (first["id"], first["distance"]) != (int(song), 0.0):
                wrong.append((int(song), first["id"], first["distance"]))
    assert wrong == []
