"""Options beyond the paper: validation artists, mined training, linear metrics, bundles."""

import dataclasses
import json

import numpy as np
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from training.artefacts import load_bundle, save_bundle
from training.config import LinearTrainConfig, TrainConfig
from training.data.fma import load_catalogue
from training.data.split import ZScore
from training.linear import fit_linear_on_catalogue
from training.model import LinearProjection, ModelConfig, TripletMLP
from training.runs import split_for
from training.train import train_on_catalogue


@pytest.fixture(scope="module")
def catalogue(small_catalogue_dir):
    return load_catalogue(data_dir=small_catalogue_dir)


def test_validation_artists_never_overlap_evaluation_or_training_artists(catalogue):
    plain = split_for(catalogue.artist_ids, TrainConfig(seed=4))
    split = split_for(catalogue.artist_ids, TrainConfig(seed=4, validation_fraction=0.2))
    assert len(split.validation) >= 2
    assert np.intersect1d(split.validation, split.eval).size == 0
    assert np.intersect1d(split.validation, split.train).size == 0
    # Carved from the training artists only: evaluation artists are those of the paper's split.
    np.testing.assert_array_equal(split.eval, plain.eval)
    np.testing.assert_array_equal(np.union1d(split.train, split.validation), plain.train)


def test_fewer_training_artists_keep_the_same_evaluation_artists(catalogue):
    plain = split_for(catalogue.artist_ids, TrainConfig(seed=1))
    small = split_for(catalogue.artist_ids, TrainConfig(seed=1, train_artists=20))
    assert len(small.train) == 20 and np.isin(small.train, plain.train).all()
    np.testing.assert_array_equal(small.eval, plain.eval)


def test_default_options_build_the_papers_network():
    model = TripletMLP(ModelConfig())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "net.0.weight": (518, 518),
        "net.0.bias": (518,),
        "net.2.weight": (518, 518),
        "net.2.bias": (518,),
    }
    assert [type(m).__name__ for m in model.net] == ["Linear", "Sigmoid", "Linear", "Tanh"]


def test_l2_normalised_deeper_network_outputs_unit_vectors_of_the_asked_size():
    import torch

    model = TripletMLP(ModelConfig(width=64, embedding_dim=16, depth=3, l2_normalize=True))
    out = model(torch.randn(5, 518))
    assert out.shape == (5, 16)
    np.testing.assert_allclose(out.norm(dim=1).detach().numpy(), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kind", ["semihard", "batch-hard"])
def test_mined_training_with_early_stopping_keeps_the_best_checked_epoch(catalogue, kind):
    config = TrainConfig(
        triplets=kind,
        epochs=6,
        batches_per_epoch=2,
        validation_fraction=0.2,
        validate_every=2,
        patience=1,
        width=64,
        seed=0,
    )
    run = train_on_catalogue(catalogue, config)
    epochs, aucs = zip(*run.validation, strict=True)
    assert set(epochs) <= {2, 4, 6} and np.isfinite(run.losses).all()
    assert run.best_epoch == epochs[int(np.argmax(aucs))]


def test_patience_without_a_validation_split_is_refused():
    with pytest.raises(ValueError, match="validation_fraction"):
        TrainConfig(patience=3)


@pytest.fixture(scope="module")
def lda_run(catalogue):
    return fit_linear_on_catalogue(catalogue, LinearTrainConfig(method="lda", embedding_dim=12))


def test_lda_bundle_round_trip_embeds_like_scikit_learn(catalogue, lda_run, tmp_path):
    out = save_bundle(lda_run, out_dir=tmp_path / "lda", data_fingerprint=catalogue.fingerprint)
    bundle = load_bundle(out)
    assert isinstance(bundle.model, LinearProjection) and bundle.embedding_dim == 12
    assert bundle.manifest["architecture"] == "linear"
    # Independent reference: scikit-learn's own transform of the z-scored training tracks.
    train = lda_run.split.train_mask(catalogue.artist_ids)
    zscore = ZScore.fit(catalogue.features[train])
    lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto", n_components=12)
    lda.fit(zscore.apply(catalogue.features[train]), catalogue.artist_ids[train])
    expected = lda.transform(zscore.apply(catalogue.features[:50]))
    np.testing.assert_allclose(bundle.embed(catalogue.features[:50]), expected, atol=1e-3)


def test_nca_fits_on_a_capped_sample(catalogue):
    config = LinearTrainConfig(method="nca", embedding_dim=8, nca_max_tracks=200, nca_max_iter=3)
    run = fit_linear_on_catalogue(catalogue, config)
    assert run.model.embedding_dim == 8
    assert np.isfinite(run.model.projection.weight.detach().numpy()).all()


def test_bundles_written_before_architectures_existed_still_load(catalogue, tmp_path):
    run = train_on_catalogue(catalogue, TrainConfig(epochs=1, width=16))
    out = save_bundle(run, out_dir=tmp_path / "old", data_fingerprint=catalogue.fingerprint)
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("architecture", "validation"):
        del manifest[key]
    for key in ("embedding_dim", "depth", "dropout", "l2_normalize"):
        del manifest["model"][key]
    (out / "manifest.json").write_text(json.dumps(manifest))
    bundle = load_bundle(out)
    assert isinstance(bundle.model, TripletMLP) and bundle.embedding_dim == 16
    assert dataclasses.asdict(bundle.model.config)["n_features"] == 518
