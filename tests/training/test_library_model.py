"""A model for any library size: z-score below the learning threshold, learned above it."""

import json

import numpy as np
import pytest

from training import selection as selection_module
from training.artefacts import load_bundle
from training.data.split import split_artists
from training.evaluation.scoring import SCORINGS
from training.library_model import (
    LIBRARY_CANDIDATES,
    MIN_LEARNING_ARTISTS,
    choose_library_model,
    make_library_model,
    selection_subset,
)


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


def _best_by_the_rule(candidates: list[dict]) -> dict:
    """Highest validation mean AUC, ties by mAP: the rule, applied by hand."""
    top = max(c["mean_auc"] for c in candidates)
    tied = [c for c in candidates if c["mean_auc"] >= top - 1e-9]
    return max(tied, key=lambda c: c["mean_average_precision"])


def test_enough_named_artists_run_the_auto_selection_and_record_its_candidates(tmp_path):
    # a synthetic subset written to a temporary folder: 240 songs by 30 artists
    from training.data.fma import load_catalogue
    from training.data.synthetic.catalogue import write_demo_catalogue

    write_demo_catalogue(out_dir=tmp_path / "demo", n_tracks=240, n_artists=30, seed=5)
    catalogue = load_catalogue(data_dir=tmp_path / "demo")
    labelled = np.ones(len(catalogue.features), bool)
    labelled[:12] = False  # some files nobody tagged: never a class
    selection = make_library_model(
        features=catalogue.features,
        artist_ids=catalogue.artist_ids,
        labelled=labelled,
        out_dir=tmp_path / "m",
    )
    auto = selection["auto"]
    names = {(c["name"], c["scoring"]) for c in auto["candidates"]}
    assert names == {(n, s) for n in LIBRARY_CANDIDATES for s in SCORINGS}
    best = _best_by_the_rule(auto["candidates"])
    assert (selection["method"], selection["scoring"]) == (best["name"], best["scoring"])
    assert best["name"] in selection["reason"] and "validation" in selection["reason"]
    assert set(auto["validation_artists"]).isdisjoint(catalogue.artist_ids[:12][~labelled[:12]])
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["selection"]["auto"]["best"] == auto["best"]
    assert manifest["scoring"]["name"] == best["scoring"]
    bundle = load_bundle(tmp_path / "m")
    assert np.isfinite(bundle.embed(catalogue.features[:5])).all()


def test_selection_reads_whole_artists_up_to_its_song_budget():
    import pandas as pd

    from training.data.fma import Catalogue

    features, artists = library(40, 5)
    tracks = pd.DataFrame({"artist_id": artists}, index=np.arange(1, len(artists) + 1))
    catalogue = Catalogue(features, tracks, pd.DataFrame(), 0, 0, "")
    subset = selection_subset(catalogue, most=63, seed=0)
    kept, counts = np.unique(subset.artist_ids, return_counts=True)
    assert len(subset.features) <= 63 and (counts == 5).all() and len(kept) == 12
    assert selection_subset(catalogue, most=1000, seed=0) is catalogue


def test_selection_on_a_subset_reads_no_artist_the_saved_model_is_evaluated_on(monkeypatch):
    reads: list[set[int]] = []  # the artists of each fit and each scoring, in order
    fit, score = selection_module.fit_run, selection_module.retrieval_scores

    def recording_fit(known, config):
        reads.append(set(map(int, known.artist_ids)))
        return fit(known, config)

    def recording_score(vectors, artist_ids, queries, **kwargs):
        reads.append(set(map(int, artist_ids)))
        return score(vectors, artist_ids, queries, **kwargs)

    features, artists = library(60, 4)
    monkeypatch.setattr(selection_module, "fit_run", recording_fit)
    monkeypatch.setattr(selection_module, "retrieval_scores", recording_score)
    run, record, _ = choose_library_model(features=features, artist_ids=artists, most=120)
    assert record["selection_songs"] <= 120  # selection did run on a subset
    saved_split = split_artists(artists, train_fraction=0.7, seed=0)
    np.testing.assert_array_equal(run.split.eval, saved_split.eval)
    *selection, refitted = reads  # the last fit is the refit, given the whole library to split
    assert refitted == set(map(int, artists))
    assert selection and set().union(*selection) <= set(map(int, saved_split.train))


def test_a_library_just_past_the_threshold_selects_among_every_candidate(tmp_path):
    # 12 artists x 3 songs: NCA fits on fewer songs than its 64 components
    features, artists = library(MIN_LEARNING_ARTISTS + 2, 3)
    selection = make_library_model(
        features=features,
        artist_ids=artists,
        labelled=np.ones(len(artists), bool),
        out_dir=tmp_path / "m",
    )
    fitted = {c["name"] for c in selection["auto"]["candidates"]}
    assert fitted == set(LIBRARY_CANDIDATES)
    assert np.isfinite(load_bundle(tmp_path / "m").embed(features)).all()


def test_a_single_song_is_refused_with_a_reason(tmp_path):
    features, artists = library(1, 1)
    with pytest.raises(ValueError, match="at least two songs"):
        make_library_model(
            features=features, artist_ids=artists, labelled=np.ones(1, bool), out_dir=tmp_path
        )
