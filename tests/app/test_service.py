"""Start-up refuses what cannot be served, with a message that says why."""

import hashlib
import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from safetensors.torch import load_file, save_file

from app.config import Settings
from app.main import create_app
from training.artefacts import WEIGHTS, BundleError, load_bundle


def with_nan_weights(bundle_dir, out):
    """A copy of the bundle whose first weight is NaN, its manifest's hashes updated to match."""
    shutil.copytree(bundle_dir, out)
    weights = load_file(str(out / WEIGHTS))
    first = sorted(weights)[0]
    weights[first] = weights[first].clone().fill_(float("nan"))
    save_file(weights, str(out / WEIGHTS))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"][WEIGHTS] = hashlib.sha256((out / WEIGHTS).read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out, first


def test_a_bundle_with_nan_weights_and_matching_hashes_is_refused(bundle_dir, tmp_path):
    broken, weight = with_nan_weights(bundle_dir, tmp_path / "nan-bundle")
    with pytest.raises(BundleError, match=f"weight {weight} holds NaN or infinite values"):
        load_bundle(broken)


def test_the_service_does_not_start_on_nan_weights(settings, bundle_dir, tmp_path):
    broken, _ = with_nan_weights(bundle_dir, tmp_path / "nan-bundle")
    app = create_app(settings.model_copy(update={"model_dir": broken}))
    with pytest.raises(BundleError, match="NaN"), TestClient(app):
        pass


def test_a_bundle_whose_output_is_not_finite_is_refused(bundle_dir, monkeypatch):
    # Finite weights can still give non-finite output (e.g. a layer that overflows).
    from training import artefacts

    real_embed = artefacts.Bundle.embed

    def overflowing(self, features):
        out = real_embed(self, features)
        out[-1, 0] = np.inf
        return out

    monkeypatch.setattr(artefacts.Bundle, "embed", overflowing)
    with pytest.raises(BundleError, match="probe batch are not finite"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_api_key_is_refused_at_start_up(key):
    with pytest.raises(ValidationError, match="the API key is empty"):
        Settings(api_key=key, _env_file=None)
