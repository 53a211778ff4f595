"""POST /evaluate against pair-counting AUCs computed from the catalogue files."""

import numpy as np
import pytest
from reference import pair_counting_auc


def test_the_catalogue_is_scored_on_the_models_evaluation_artists_only(client, bundle, catalogue):
    held = np.isin(catalogue.artist_ids, bundle.split.eval)
    expected = pair_counting_auc(catalogue.features[held], catalogue.artist_ids[held])
    body = client.post("/evaluate", json={"space": "raw", "every_track": True}).json()
    assert body["mean_auc"] == pytest.approx(expected, abs=1e-9)
    assert body["n_songs"] == held.sum()
