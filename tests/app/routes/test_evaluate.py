"""POST /evaluate: the catalogue against pair-counting AUCs from its files; a posted set with
bounded work, a time limit and finite metrics in range."""

import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from reference import pair_counting_auc

from app.main import create_app
from training.artefacts import load_bundle
from training.evaluation.scoring import Scoring
from training.experiments.paper import evaluate_run

N_FEATURES = 518


def posted_set(n: int, *, other_artist: bool, seed: int = 0) -> bytes:
    """The issue's reproduction: n songs by one artist (the last by another when asked),
    as compact JSON with small integer features."""
    rng = np.random.default_rng(seed)
    features = rng.integers(0, 10, size=(n, N_FEATURES)).tolist()
    artists = [1] * n
    if other_artist:
        artists[-1] = 2
    songs = [{"artist": a, "features": f} for a, f in zip(artists, features, strict=True)]
    return json.dumps(
        {"space": "raw", "every_track": True, "songs": songs}, separators=(",", ":")
    ).encode()


def post(client, body: bytes):
    return client.post("/evaluate", content=body, headers={"Content-Type": "application/json"})


@pytest.fixture
def sqlite_client(settings):
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("the posted set does not touch the database: once is enough")
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_7500_song_one_artist_every_track_set_is_answered_within_its_limits(sqlite_client):
    body = posted_set(7_500, other_artist=True)
    assert len(body) < 8_000_000  # inside the default body limit, as in the issue
    response = post(sqlite_client, body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["n_queries"] == 7_499 and result["n_songs"] == 7_500
    for metric in ("mean_auc", "mean_average_precision", "recall_at_10", "ndcg_at_10"):
        assert 0.0 <= result[metric] <= 1.0, (metric, result[metric])
    # Each query has 7,498 relevant songs and one irrelevant one: recall@10 is 9 or 10
    # of 7,498, whatever the ranking.
    assert 9 / 7_498 <= result["recall_at_10"] <= 10 / 7_498


def test_a_set_by_one_artist_only_is_refused(sqlite_client):
    response = post(sqlite_client, posted_set(7_500, other_artist=False))
    assert response.status_code == 422 and "same artist" in response.text


def test_more_work_than_the_limit_is_refused_before_ranking(settings):
    small = settings.model_copy(update={"max_evaluate_work": 100_000})
    with TestClient(create_app(small)) as client:
        response = post(client, posted_set(400, other_artist=True))
    assert response.status_code == 413
    assert "399 queries ranking 400 songs is 159600 distances" in response.text
    assert "MUSICSIM_MAX_EVALUATE_WORK=100000" in response.text


def test_an_evaluation_past_its_time_limit_is_stopped_with_a_503(settings):
    hurried = settings.model_copy(update={"evaluate_timeout_seconds": 1e-6})
    with TestClient(create_app(hurried)) as client:
        response = post(client, posted_set(300, other_artist=True))
        assert response.status_code == 503 and "time limit of 1e-06 s" in response.text
        assert client.get("/health").status_code == 200


def test_features_that_overflow_the_zscore_space_are_refused(client):
    songs = [
        {"artist": i % 3, "features": [-3.4e38 if i == 0 else float(i)] * N_FEATURES}
        for i in range(9)
    ]
    response = client.post("/evaluate", json={"space": "zscore", "songs": songs})
    assert response.status_code == 422 and "not finite" in response.text


def test_the_catalogue_is_scored_on_the_models_evaluation_artists_only(client, bundle, catalogue):
    held = np.isin(catalogue.artist_ids, bundle.split.eval)
    expected = pair_counting_auc(catalogue.features[held], catalogue.artist_ids[held])
    body = client.post("/evaluate", json={"space": "raw", "every_track": True}).json()
    assert body["mean_auc"] == pytest.approx(expected, abs=1e-9)
    assert body["n_songs"] == held.sum()


def test_the_model_row_is_scored_as_musicsim_evaluate_scores_it(
    settings, bundle_dir, catalogue, tmp_path
):
    """A bundle chosen with local-scaling at k = 20: POST /evaluate's model row uses that
    scoring and that k unless the body names others, as `musicsim evaluate` does."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("the figures do not depend on the database: once is enough")
    chosen = Scoring("local-scaling", k=20)
    out = tmp_path / "ls20"  # the session's bundle, as if chosen with that scoring
    shutil.copytree(bundle_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "scoring": chosen.as_dict()}))
    saved = load_bundle(out)
    assert saved.scoring == chosen

    def cli_figure(scoring: Scoring) -> float:  # what `musicsim evaluate` prints
        (row,) = evaluate_run(catalogue, saved, seed=0, spaces=("model",), scorings=(scoring,))
        return row.mean_auc

    with TestClient(create_app(settings.model_copy(update={"model_dir": out}))) as client:
        answer = client.post("/evaluate", json={}).json()
        asked_k = client.post("/evaluate", json={"scoring_k": 10}).json()
        raw = client.post("/evaluate", json={"space": "raw"}).json()
    assert (answer["scoring"], answer["scoring_k"]) == ("local-scaling", 20)
    assert answer["mean_auc"] == pytest.approx(cli_figure(chosen), abs=1e-12)
    assert cli_figure(Scoring("local-scaling", k=10)) != pytest.approx(answer["mean_auc"], abs=1e-6)
    assert asked_k["mean_auc"] == pytest.approx(
        cli_figure(Scoring("local-scaling", k=10)), abs=1e-12
    )
    assert (raw["scoring"], raw["scoring_k"]) == ("l2", 10)  # baselines: l2, as the CLI
