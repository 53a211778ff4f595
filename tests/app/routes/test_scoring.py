"""Scorings through the HTTP API: the exact re-ranking, similarity, defaults and bad names."""

import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scoring_reference import allowed_by, reference_top

from app.catalogue.rows import SongRows
from app.index.faiss_index import FaissSongIndex
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
        client.app.state.service.index.wait_for_neighbourhoods()  # the start-up build
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
        ready = table_state(client, "ready")
    assert scoring["name"] == "local-scaling" and scoring["k"] == 7 and scoring["pool"] == 100
    assert scoring["allowed"] == list(SCORINGS)
    # The service's own scoring is computed before it answers: no wait above.
    assert scoring["neighbourhoods"] == ready


def table_state(client, state: str, *, done: int | None = None) -> dict:
    """What /health should report of the neighbourhoods of every indexed song."""
    total = client.get("/health").json()["songs_indexed"]
    return {"state": state, "done": total if done is None else done, "total": total, "error": None}


def test_an_l2_service_computes_the_neighbourhoods_from_start_up(client):
    neighbourhoods = client.get("/health").json()["scoring"]["neighbourhoods"]
    assert neighbourhoods == table_state(client, "ready")  # no request asked for them


class HeldSearches:
    """FaissSongIndex.search, where the neighbourhoods' build thread waits until released
    and every other thread's searches are counted."""

    def __init__(self, real):
        self.real = real
        self.release = threading.Event()
        self.requests = 0

    def __call__(self, index, vectors, **kwargs):
        if threading.current_thread().name == "neighbourhoods":
            self.release.wait()
        else:
            self.requests += 1
        return self.real(index, vectors, **kwargs)


def test_another_scoring_answers_503_until_its_background_build_ends_then_the_eager_answer(
    settings, catalogue, monkeypatch
):
    held = HeldSearches(FaissSongIndex.search)
    # A function, not the instance: only functions bind as methods.
    monkeypatch.setattr(FaissSongIndex, "search", lambda index, *a, **kw: held(index, *a, **kw))
    song = int(catalogue.track_ids[0])
    features = catalogue.features[0].tolist()
    lazy = settings.model_copy(update={"scoring_warmup": False})
    try:
        with TestClient(create_app(lazy)) as client:
            health = client.get("/health").json()["scoring"]["neighbourhoods"]
            assert health == table_state(client, "not-started", done=0)
            total = health["total"]
            before = held.requests
            answers = [
                client.get(f"/songs/{song}/similar", params={"scoring": "local-scaling"}),
                client.post(
                    "/songs/similar", json={"features": features, "scoring": "mutual-proximity"}
                ),
                client.post(
                    "/songs/similar/batch",
                    json={"items": [{"features": features}], "scoring": "local-scaling"},
                ),
            ]
            assert held.requests == before  # no request searched, let alone built the table
            names = ["local-scaling", "mutual-proximity", "local-scaling"]
            for answer, name in zip(answers, names, strict=True):
                assert answer.status_code == 503, answer.text
                assert int(answer.headers["retry-after"]) >= 1
                detail = answer.json()["detail"]
                assert detail.startswith(f"{name} needs every song's neighbourhood: 0 of {total:,}")
            building = client.get("/health").json()["scoring"]["neighbourhoods"]
            assert building == table_state(client, "building", done=0)
            l2 = client.get(f"/songs/{song}/similar", params={"scoring": "l2"})
            assert l2.status_code == 200  # other scorings answer meanwhile
            held.release.set()
            assert client.app.state.service.index.wait_for_neighbourhoods(timeout_s=300)
            ready = client.get("/health").json()["scoring"]["neighbourhoods"]
            assert ready == table_state(client, "ready")
            later = client.get(f"/songs/{song}/similar", params={"scoring": "local-scaling"})
            responses = client.get("/openapi.json").json()["paths"]["/songs/{song_id}/similar"]
    finally:
        held.release.set()  # a failed assertion must not leave the build waiting
    assert "503" in responses["get"]["responses"]
    # An index of its own (no shared cache): the table is computed again, eagerly.
    eager = settings.model_copy(update={"scoring": "local-scaling", "index_cache_dir": None})
    with TestClient(create_app(eager)) as client:
        expected = client.get(f"/songs/{song}/similar")
    assert later.status_code == 200 and expected.status_code == 200
    assert [r["id"] for r in later.json()["results"]] == [
        r["id"] for r in expected.json()["results"]
    ]


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
