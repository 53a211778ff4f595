"""Training lowers the loss, is reproducible, and bundles reload to identical embeddings."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
from reference import pair_counting_auc
from safetensors.numpy import save_file
from safetensors.torch import load_file as load_torch
from safetensors.torch import save_file as save_torch

import training.train as train_module
from training.artefacts import BundleError, load_bundle, save_bundle
from training.config import TrainConfig
from training.data.fma import load_catalogue
from training.model import embed
from training.train import train_on_catalogue

# Enough epochs for the loss to fall clearly (to about half by epoch 12 with seed 0);
# every other test here is about the machinery, not the quality reached.
SHORT = TrainConfig(epochs=12, seed=0)


@pytest.fixture(scope="module")
def catalogue(small_catalogue_dir):
    return load_catalogue(data_dir=small_catalogue_dir)


@pytest.fixture(scope="module")
def run(catalogue):
    return train_on_catalogue(catalogue, SHORT)


@pytest.fixture
def bundle_dir(run, catalogue, tmp_path):
    return save_bundle(run, out_dir=tmp_path / "bundle", data_fingerprint=catalogue.fingerprint)


def test_a_short_training_run_lowers_the_loss(run):
    assert len(run.losses) == SHORT.epochs
    assert np.mean(run.losses[-5:]) < 0.8 * np.mean(run.losses[:5])


def test_zscore_statistics_come_from_training_artists_only(run, catalogue):
    train = np.isin(catalogue.artist_ids, run.split.train)
    np.testing.assert_allclose(
        run.zscore.mean, catalogue.features[train].mean(0), rtol=1e-4, atol=1e-4
    )


def test_seeded_runs_are_reproducible(catalogue):
    config = dataclasses.replace(SHORT, epochs=3, triplets="genre")
    first, second = (train_on_catalogue(catalogue, config) for _ in range(2))
    assert first.losses == second.losses
    for a, b in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert (a == b).all()


def test_a_saved_bundle_reloads_to_identical_embeddings(run, catalogue, bundle_dir):
    bundle = load_bundle(bundle_dir)
    expected = embed(run.model, run.zscore.apply(catalogue.features))
    np.testing.assert_array_equal(bundle.embed(catalogue.features), expected)
    assert (bundle.split.eval == run.split.eval).all()
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["training"]["epochs"] == SHORT.epochs
    assert manifest["data"]["fingerprint"] == catalogue.fingerprint


def test_a_missing_bundle_is_refused(tmp_path):
    with pytest.raises(BundleError, match="manifest.json not found"):
        load_bundle(tmp_path / "nothing")


def test_a_truncated_weight_file_is_refused(bundle_dir):
    weights = bundle_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(BundleError, match="model.safetensors does not match the SHA-256"):
        load_bundle(bundle_dir)


def _rehash(bundle_dir, name):
    """Record a replaced file's hash, so that only the content check can catch it."""
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256((bundle_dir / name).read_bytes()).hexdigest()
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))


def test_weights_of_the_wrong_shape_are_refused_even_with_a_matching_hash(bundle_dir):
    state = load_torch(str(bundle_dir / "model.safetensors"))
    state["net.0.weight"] = state["net.0.weight"][:, :100].contiguous()
    save_torch(state, str(bundle_dir / "model.safetensors"))
    _rehash(bundle_dir, "model.safetensors")
    with pytest.raises(BundleError, match="weights do not fit the model"):
        load_bundle(bundle_dir)


def test_zscore_statistics_of_the_wrong_size_are_refused(bundle_dir):
    save_file(
        {"mean": np.zeros(10, np.float32), "std": np.ones(10, np.float32)},
        str(bundle_dir / "zscore.safetensors"),
    )
    _rehash(bundle_dir, "zscore.safetensors")
    with pytest.raises(BundleError, match="z-score statistics have shape"):
        load_bundle(bundle_dir)


def test_a_manifest_that_is_not_json_is_refused(bundle_dir):
    (bundle_dir / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle_dir)


def test_a_flipped_byte_in_the_weights_is_refused(bundle_dir):
    weights = bundle_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match the SHA-256"):
        load_bundle(bundle_dir)


def test_an_unknown_format_version_is_refused(bundle_dir):
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unsupported format_version 99"):
        load_bundle(bundle_dir)


# A high learning rate: the validation curve peaks (epoch 4 with seed 0), then falls.
EARLY = TrainConfig(epochs=8, width=32, lr=0.03, validation_fraction=0.2, validate_every=1, seed=0)


def test_early_stopping_keeps_the_weights_with_the_best_validation_auc(catalogue):
    run = train_on_catalogue(catalogue, EARLY)
    epochs, aucs = zip(*run.validation, strict=True)
    assert list(epochs) == list(range(1, EARLY.epochs + 1))
    # The test needs a curve whose best check is not the last one.
    assert run.best_epoch != EARLY.epochs and max(aucs) > aucs[-1] + 1e-6
    held = run.split.validation_mask(catalogue.artist_ids)
    kept = embed(run.model, run.zscore.apply(catalogue.features[held]))
    assert pair_counting_auc(kept, catalogue.artist_ids[held]) == pytest.approx(max(aucs))
    assert run.best_epoch == epochs[int(np.argmax(aucs))]


class _ScriptedValidation:
    """Stands in for the validation AUC: a given curve, and a copy of the weights at each check."""

    def __init__(self, curve):
        self.curve = list(curve)
        self.weights = []

    def __call__(self, model, validation):
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return self.curve[len(self.weights) - 1]


def test_training_stops_after_patience_checks_without_gain(catalogue, monkeypatch):
    # Checks every 2 epochs. A miss (epoch 4), then a gain (epoch 6) that restarts the
    # count, then two misses (epochs 8 and 10): with patience 2 the run ends after
    # epoch 10 of 20, keeping the weights of epoch 6.
    scripted = _ScriptedValidation([0.5, 0.4, 0.7, 0.6, 0.65] + [0.9] * 20)
    monkeypatch.setattr(train_module, "_validation_auc", scripted)
    epochs_run = []
    config = dataclasses.replace(EARLY, epochs=20, validate_every=2, patience=2)
    run = train_on_catalogue(
        catalogue, config, on_epoch=lambda epoch, _loss: epochs_run.append(epoch)
    )
    assert epochs_run == list(range(10)) and len(run.losses) == 10
    assert run.validation == [(2, 0.5), (4, 0.4), (6, 0.7), (8, 0.6), (10, 0.65)]
    assert run.best_epoch == 6
    best, last = scripted.weights[2], scripted.weights[-1]
    for name, value in run.model.state_dict().items():
        torch.testing.assert_close(value, best[name], rtol=0, atol=0)
    assert any(not torch.equal(best[name], last[name]) for name in best)


def test_without_patience_training_runs_every_epoch_and_keeps_the_best_check(
    catalogue, monkeypatch
):
    scripted = _ScriptedValidation([0.5, 0.9, 0.4, 0.3, 0.2])
    monkeypatch.setattr(train_module, "_validation_auc", scripted)
    run = train_on_catalogue(catalogue, dataclasses.replace(EARLY, epochs=5, patience=0))
    assert len(run.losses) == 5 and run.best_epoch == 2
    for name, value in run.model.state_dict().items():
        torch.testing.assert_close(value, scripted.weights[1][name], rtol=0, atol=0)
