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


def _rehash(folder) -> None:
    """Make the manifest's hashes match the files as they now are: what is left to catch
    is then the file's content, not its checksum."""
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _replace_with_folder(folder, name) -> None:
    (folder / name).unlink()
    (folder / name).mkdir()


def _truncate(folder, name) -> None:
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])


def _set_in_manifest(folder, key, value) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest[key] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))


# How a model folder can be unreadable (running as root, permissions do not stop reads),
# and the words the refusal must contain.
UNREADABLE = {
    "the bundle is a file": (
        lambda f: (shutil.rmtree(f), f.write_text("not a bundle")),
        "not a folder",
    ),
    "manifest.json is a folder": (
        lambda f: _replace_with_folder(f, "manifest.json"),
        "manifest.json is not a regular file",
    ),
    "manifest.json is not JSON": (
        lambda f: (f / "manifest.json").write_text('{"format_version": 1, "name": '),
        "manifest.json is not valid JSON",
    ),
    "manifest.json is not text": (
        lambda f: (f / "manifest.json").write_bytes(b"\xff\xfe\x00\x81"),
        "manifest.json is not valid JSON",
    ),
    "the weights are a folder": (
        lambda f: _replace_with_folder(f, WEIGHTS),
        f"{WEIGHTS} is not a regular file",
    ),
    "the weights are truncated": (lambda f: _truncate(f, WEIGHTS), "does not match the SHA-256"),
    "the weights are truncated, hashes updated": (
        lambda f: (_truncate(f, WEIGHTS), _rehash(f)),
        "weights do not fit the model",
    ),
    "the weights are empty, hashes updated": (
        lambda f: ((f / WEIGHTS).write_bytes(b""), _rehash(f)),
        "weights do not fit the model",
    ),
    "the z-score file is truncated, hashes updated": (
        lambda f: (_truncate(f, "zscore.safetensors"), _rehash(f)),
        "z-score statistics unreadable",
    ),
    "split.json is a folder": (
        lambda f: _replace_with_folder(f, "split.json"),
        "split.json is not a regular file",
    ),
    "the recorded scoring is not a mapping": (
        lambda f: _set_in_manifest(f, "scoring", ["local-scaling"]),
        "the manifest's scoring is invalid",
    ),
}


@pytest.fixture(params=sorted(UNREADABLE))
def unreadable(request, bundle_dir, tmp_path):
    """A copy of the bundle broken one way, and the words its refusal must contain."""
    folder = tmp_path / "broken-bundle"
    shutil.copytree(bundle_dir, folder)
    breaks, words = UNREADABLE[request.param]
    breaks(folder)
    return folder, words


def test_an_unreadable_model_stops_create_app_with_a_message_naming_it(unreadable, tmp_path):
    folder, words = unreadable
    settings = Settings(
        model_dir=folder, database_url=f"sqlite:///{tmp_path / 'm.db'}", _env_file=None
    )
    with pytest.raises(BundleError) as refused, TestClient(create_app(settings)):
        pass
    assert words in str(refused.value) and str(folder) in str(refused.value)


def test_an_unreadable_model_stops_serve_with_exit_2_and_no_traceback(unreadable, tmp_path):
    from typer.testing import CliRunner

    from app.cli import app as cli

    folder, words = unreadable
    env = {"MUSICSIM_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}"}
    result = CliRunner().invoke(cli, ["serve", "--model", str(folder)], env=env)
    output = " ".join(result.output.split())  # the message may be wrapped
    assert result.exit_code == 2, result.output
    assert words in output and "Traceback" not in output
    assert isinstance(result.exception, SystemExit)
