"""Scorings through the HTTP API: the exact re-ranking, similarity, defaults and bad names."""

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scoring_reference import allowed_by, reference_top

from app.catalogue.rows import SongRows
from app.index.protocol import SongFilter
from app.main import create_app
from training.evaluation.scoring import SCORINGS


@pytest.fixture
def index_backend():
    return "faiss"


@pytest.fixture
def whole_pool_client(settings):
    # A pool as large as the catalogue (1,500 songs): the re-rank sees every song.
    with TestClient(create_app(settings.model_copy(update={"scoring_pool": 2000}))) as client:
        yield client


def catalogue_rows(catalogue) -> SongRows:
    tracks = catalogue.tracks
    return SongRows.from_columns(
        catalogue.track_ids,
        catalogue.artist_ids,
        [g if isinstance(g, str) and g else None for g in tracks["genre"]],
        tracks["latitude"].to_numpy(dtype=np.float64),
        tracks["longitude"].to_numpy(dtype=np.float64),
    )


@pytest.mark.parametrize("name", SCORINGS)
def test_every_scoring_and_filter_answers_the_exact_re_ranking(
    whole_pool_client, catalogue, bundle, name, database_url
):
    if database_url.startswith("postgresql"):
        pytest.skip("the ranking does not depend on the database")
    rows = catalogue_rows(catalogue)
    vectors = bundle.embed(catalogue.features)
    genre = "Rock"
    row = 0
    song = int(rows.ids[row])
    artist = int(rows.artist_ids[row])
    for params, where in [
        ({}, SongFilter()),
        ({"genre": genre}, SongFilter(genre=genre)),
        ({"exclude_same_artist": "true"}, SongFilter(exclude_artist=artist)),
    ]:
        answer = whole_pool_client.get(
            f"/songs/{song}/similar", params={"k": 8, "scoring": name, **params}
        )
        assert answer.status_code == 200, answer.text
        expected = reference_top(
            rows,
            vectors,
            vectors[row],
            name=name,
            k=8,
            allowed=allowed_by(rows, where, row),
            own=row,
        )
        assert [r["id"] for r in answer.json()["results"]] == expected
    cold = (catalogue.features[3] + catalogue.features[9]) / 2  # a song nobody stored
    answer = whole_pool_client.post(
        "/songs/similar", json={"features": cold.tolist(), "k": 8, "scoring": name}
    )
    embedded = bundle.embed(cold[None, :])[0]
    expected = reference_top(
        rows, vectors, embedded, name=name, k=8, allowed=allowed_by(rows, SongFilter())
    )
    assert [r["id"] for r in answer.json()["results"]] == expected


def test_results_carry_a_similarity_in_the_unit_interval(client, catalogue):
    song = int(catalogue.track_ids[0])
    for name in SCORINGS:
        results = client.get(f"/songs/{song}/similar", params={"k": 20, "scoring": name}).json()
        similarity = [r["similarity"] for r in results["results"]]
        assert all(0.0 <= s <= 1.0 for s in similarity)
        assert similarity == sorted(similarity, reverse=True)


def test_a_song_posted_with_its_own_features_is_its_own_first_result(client, catalogue):
    # Not exactly 0: the network embeds one posted row and a 20,000-row batch with
    # different float32 summation orders (~1e-6 apart); the distance itself is exact
    # (tests/app/index/test_scored.py queries stored vectors and gets 0.0).
    for row in (0, 1, 2):
        body = {"features": catalogue.features[row].tolist(), "k": 3}
        results = client.post("/songs/similar", json=body).json()["results"]
        assert results[0]["id"] == catalogue.track_ids[row] and results[0]["distance"] < 1e-4
        assert results[0]["similarity"] == 1.0


def test_unknown_scorings_are_refused_naming_the_allowed_ones(client, catalogue):
    song = int(catalogue.track_ids[0])
    features = catalogue.features[0].tolist()
    answers = [
        client.get(f"/songs/{song}/similar", params={"scoring": "cosine"}),
        client.post("/songs/similar", json={"features": features, "scoring": "cosine"}),
        client.post(
            "/songs/similar/batch", json={"items": [{"features": features}], "scoring": "cosine"}
        ),
        client.post("/evaluate", json={"scoring": "cosine"}),
        client.post("/evaluate", json={"scoring": "local-scaling", "scoring_k": 0}),
    ]
    for answer in answers:
        assert answer.status_code == 422
    for answer in answers[:4]:
        assert "'l2', 'local-scaling' or 'mutual-proximity'" in answer.text


def test_health_reports_the_configured_scoring(settings):
    configured = settings.model_copy(update={"scoring": "local-scaling", "scoring_k": 7})
    with TestClient(create_app(configured)) as client:
        scoring = client.get("/health").json()["scoring"]
    assert scoring["name"] == "local-scaling" and scoring["k"] == 7 and scoring["pool"] == 100
    assert scoring["allowed"] == list(SCORINGS)


def test_the_default_scoring_is_the_one_requests_get(settings, catalogue):
    song = int(catalogue.track_ids[0])
    configured = settings.model_copy(update={"scoring": "mutual-proximity"})
    with TestClient(create_app(configured)) as client:
        default = client.get(f"/songs/{song}/similar", params={"k": 10}).json()["results"]
        named = client.get(
            f"/songs/{song}/similar", params={"k": 10, "scoring": "mutual-proximity"}
        ).json()["results"]
        l2 = client.get(f"/songs/{song}/similar", params={"k": 10, "scoring": "l2"}).json()
    assert default == named
    assert [r["id"] for r in default] != [r["id"] for r in l2["results"]]


def test_evaluate_ranks_by_the_scoring_asked_for(client):
    l2 = client.post("/evaluate", json={"space": "zscore", "scoring": "l2"}).json()
    ls = client.post("/evaluate", json={"space": "zscore", "scoring": "local-scaling"}).json()
    assert l2["scoring"] == "l2" and ls["scoring"] == "local-scaling"
    assert l2["mean_auc"] != ls["mean_auc"]
    assert 0 <= ls["antihub_share"] <= 1 and ls["coverage"] == pytest.approx(
        1 - ls["antihub_share"]
    )
