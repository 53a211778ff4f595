"""A model for any library size: z-score below the learning threshold, learned above it."""

import json

import numpy as np
import pytest

from training.artefacts import load_bundle
from training.library_model import MIN_LEARNING_ARTISTS, make_library_model


def library(n_artists: int, songs_each: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    artists = np.repeat(np.arange(n_artists), songs_each)
    centres = rng.normal(size=(n_artists, 518)) * 2
    features = (centres[artists] + rng.normal(size=(len(artists), 518))).astype(np.float32)
    return features, artists


def test_few_named_artists_get_the_librarys_own_zscore(tmp_path):
    features, artists = library(MIN_LEARNING_ARTISTS - 1, 3)
    selection = make_library_model(
        features=features,
        artist_ids=artists,
        labelled=np.ones(len(artists), bool),
        out_dir=tmp_path / "m",
    )
    bundle = load_bundle(tmp_path / "m")
    assert selection["method"] == "zscore"
    expected = (features - features.mean(axis=0)) / features.std(axis=0)
    assert bundle.embed(features) == pytest.approx(expected, rel=1e-3, abs=1e-3)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["selection"] == selection


def test_unnamed_artists_never_count_towards_learning(tmp_path):
    features, artists = library(MIN_LEARNING_ARTISTS + 5, 3)
    unnamed = np.zeros(len(artists), bool)  # every artist made up by the import
    selection = make_library_model(
        features=features, artist_ids=artists, labelled=unnamed, out_dir=tmp_path / "m"
    )
    assert selection["method"] == "zscore"
    assert selection["artists_with_two_or_more_songs"] == 0


def test_enough_named_artists_get_a_learned_metric(tmp_path):
    features, artists = library(MIN_LEARNING_ARTISTS + 5, 4)
    selection = make_library_model(
        features=features,
        artist_ids=artists,
        labelled=np.ones(len(artists), bool),
        out_dir=tmp_path / "m",
    )
    assert selection["method"] == "lda"
    assert load_bundle(tmp_path / "m").embedding_dim < 518


def test_a_single_song_is_refused_with_a_reason(tmp_path):
    features, artists = library(1, 1)
    with pytest.raises(ValueError, match="at least two songs"):
        make_library_model(
            features=features, artist_ids=artists, labelled=np.ones(1, bool), out_dir=tmp_path
        )
