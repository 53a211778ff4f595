"""The 2-D map: PCA of the embeddings of an evenly spaced, bounded sample of songs."""

import numpy as np
from fastapi.testclient import TestClient

from app.main import create_app
from app.song_map import evenly_spaced
from training.evaluation.maps import principal_plane


def pca_by_svd(points: np.ndarray) -> np.ndarray:
    """The reference: the centred points' first two right singular vectors."""
    centred = points - points.mean(axis=0)
    _, _, right = np.linalg.svd(centred, full_matrices=False)
    return centred @ right[:2].T


def test_principal_plane_agrees_with_an_svd_up_to_sign():
    rng = np.random.default_rng(0)
    # an elongated cloud: well-separated variances make the axes well defined
    points = rng.normal(size=(400, 6)) * [9.0, 4.0, 1.0, 0.5, 0.2, 0.1] + 3.0
    plane = principal_plane(points)
    reference = pca_by_svd(points)
    for axis in range(2):
        same = np.allclose(plane[:, axis], reference[:, axis], atol=1e-8)
        flipped = np.allclose(plane[:, axis], -reference[:, axis], atol=1e-8)
        assert same or flipped
    assert plane[:, 0].var() > plane[:, 1].var()
    # the sign is fixed by the data, not by the order of the rows
    order = rng.permutation(len(points))
    np.testing.assert_allclose(principal_plane(points[order]), plane[order], atol=1e-8)


def test_few_points_still_give_a_plane():
    assert principal_plane(np.ones((1, 5))).shape == (1, 2)
    assert principal_plane(np.arange(6.0).reshape(3, 2)).shape == (3, 2)
    assert principal_plane(np.arange(3.0).reshape(3, 1)).shape == (3, 2)


def test_the_sample_is_bounded_spread_and_keeps_both_ends():
    ids = np.arange(10, 10_010, dtype=np.int64)
    sample = evenly_spaced(ids, 100)
    assert len(sample) == 100 and len(np.unique(sample)) == 100
    assert sample[0] == 10 and sample[-1] == 10_009
    gaps = np.diff(sample)
    assert gaps.max() - gaps.min() <= 1
    np.testing.assert_array_equal(evenly_spaced(ids[:50], 100), ids[:50])


def test_the_map_is_the_pca_of_the_bundles_embeddings_of_a_sample(settings, bundle, catalogue):
    bounded = settings.model_copy(update={"map_points": 200})
    with TestClient(create_app(bounded)) as client:
        body = client.get("/songs/map").json()
        assert body["n_songs"] == len(catalogue.tracks)
        ids = np.asarray(body["ids"])
        assert len(ids) == 200 and (np.diff(ids) > 0).all()
        assert set(ids) <= set(catalogue.track_ids.tolist())
        rows = np.searchsorted(catalogue.track_ids, ids)
        reference = pca_by_svd(bundle.embed(catalogue.features[rows]).astype(np.float64))
        for axis, name in enumerate(("x", "y")):
            got = np.asarray(body[name])
            sign = np.sign(got @ reference[:, axis])
            np.testing.assert_allclose(got, sign * reference[:, axis], atol=1e-3)
        tracks = catalogue.tracks.loc[ids]
        assert body["titles"] == tracks["title"].tolist()
        assert body["artists"] == tracks["artist_name"].tolist()
        assert body["genres"] == [g if isinstance(g, str) else None for g in tracks["genre"]]

        # drawn once: a song added afterwards does not redraw it
        new = {"title": "Later", "artist": "Someone", "features": catalogue.features[0].tolist()}
        assert client.post("/songs", json=new).status_code == 201
        assert client.get("/songs/map").json() == body


def test_the_map_needs_the_key_when_reads_do(settings):
    guarded = settings.model_copy(update={"api_key": "k", "api_key_for_reads": True})
    with TestClient(create_app(guarded)) as client:
        assert client.get("/songs/map").status_code == 401
        assert client.get("/genres").status_code == 401
        assert client.get("/songs").status_code == 401
        assert client.get("/songs", headers={"X-API-Key": "k"}).status_code == 200
        # the page itself holds no data: it loads, and asks for the key
        assert client.get("/").status_code == 200
        assert client.get("/static/explorer.js").status_code == 200
        assert client.get("/static/index.html").status_code == 404


def test_genres_are_the_catalogues_top_level_genres(client, catalogue):
    genres = catalogue.genres  # genres.csv: a top-level genre has no parent (0)
    want = sorted(genres.loc[genres["parent"] == 0, "title"])
    assert client.get("/genres").json() == {"genres": want}
