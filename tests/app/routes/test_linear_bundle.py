"""The service serves a linear (LDA) bundle exactly like an MLP one."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from training.artefacts import load_bundle, save_bundle
from training.config import LinearTrainConfig
from training.linear import fit_linear_on_catalogue


@pytest.fixture(scope="module")
def linear_bundle_dir(catalogue, tmp_path_factory):
    run = fit_linear_on_catalogue(catalogue, LinearTrainConfig(method="lda", embedding_dim=16))
    out = tmp_path_factory.mktemp("models") / "lda"
    return save_bundle(run, out_dir=out, data_fingerprint=catalogue.fingerprint)


@pytest.fixture
def linear_client(settings, linear_bundle_dir):
    linear = settings.model_copy(update={"model_dir": linear_bundle_dir})
    with TestClient(create_app(linear)) as client:
        yield client


def test_a_linear_bundle_serves_neighbours_by_its_own_embedding(
    linear_client, linear_bundle_dir, catalogue
):
    health = linear_client.get("/health").json()
    assert health["model"]["name"] == "lda" and health["songs_indexed"] == len(catalogue.tracks)
    emb = load_bundle(linear_bundle_dir).embed(catalogue.features).astype(np.float64)
    assert emb.shape[1] == 16
    i = 11
    body = linear_client.get(f"/songs/{int(catalogue.track_ids[i])}/similar", params={"k": 5})
    d = np.sqrt(((emb - emb[i]) ** 2).sum(1))
    d[i] = np.inf
    expected = np.sort(d)[:5]
    np.testing.assert_allclose([r["distance"] for r in body.json()["results"]], expected, rtol=1e-4)
    cold = linear_client.post(
        "/songs/similar", json={"features": catalogue.features[i].tolist(), "k": 1}
    )
    assert cold.json()["results"][0]["id"] == int(catalogue.track_ids[i])


def test_a_linear_bundle_is_evaluated_on_its_evaluation_artists(linear_client):
    body = linear_client.post("/evaluate", json={"space": "model"}).json()
    assert 0.5 < body["mean_auc"] <= 1.0 and 0 < body["mean_average_precision"] <= 1.0
