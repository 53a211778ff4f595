"""`--method auto`: selection reads training artists only and picks by the stated rule."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from training import selection as selection_module
from training.cli import app as cli
from training.data.fma import load_catalogue
from training.data.split import split_artists
from training.selection import CANDIDATES, AutoConfig, refit, select_candidates

QUICK = ("zscore", "lda", "paper")


@pytest.fixture(scope="module")
def catalogue(small_catalogue_dir):
    return load_catalogue(data_dir=small_catalogue_dir)


def test_selection_never_reads_an_evaluation_artist(catalogue, monkeypatch):
    touched: set[int] = set()
    fit, score = selection_module.fit_run, selection_module.retrieval_scores

    def recording_fit(known, config):
        touched.update(map(int, known.artist_ids))
        return fit(known, config)

    def recording_score(vectors, artist_ids, queries, **kwargs):
        touched.update(map(int, artist_ids))
        return score(vectors, artist_ids, queries, **kwargs)

    monkeypatch.setattr(selection_module, "fit_run", recording_fit)
    monkeypatch.setattr(selection_module, "retrieval_scores", recording_score)
    # Every candidate (not QUICK): each fits and scores through these two functions.
    chosen = select_candidates(catalogue, AutoConfig(seed=1, epochs=1, candidates=CANDIDATES))
    assert {c.name for c in chosen.candidates} == set(CANDIDATES)
    paper_split = split_artists(catalogue.artist_ids, train_fraction=0.7, seed=1)
    assert touched and touched <= set(map(int, paper_split.train))
    assert not touched & set(map(int, paper_split.eval))
    assert set(map(int, chosen.validation_artists)) < set(map(int, paper_split.train))


def test_the_best_candidate_has_the_highest_validation_auc_then_map(catalogue):
    chosen = select_candidates(catalogue, AutoConfig(seed=0, epochs=1, candidates=QUICK))
    assert len(chosen.candidates) == len(QUICK) * 3  # each candidate with each scoring
    figures = [(c.mean_auc, c.mean_average_precision) for c in chosen.candidates]
    assert (chosen.best.mean_auc, chosen.best.mean_average_precision) == max(figures)
    run = refit(catalogue, chosen)
    paper_split = split_artists(catalogue.artist_ids, train_fraction=0.7, seed=0)
    np.testing.assert_array_equal(run.split.train, paper_split.train)  # all training artists


def test_train_auto_saves_the_choice_and_every_candidates_figures(small_catalogue_dir, tmp_path):
    out = tmp_path / "auto"
    args = ["train", "--data", str(small_catalogue_dir), "--out", str(out), "--method", "auto"]
    result = CliRunner().invoke(cli, [*args, "--auto-epochs", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    selection = manifest["selection"]
    assert len(selection["candidates"]) == 5 * 3
    assert manifest["scoring"]["name"] == selection["best"]["scoring"]
    best = max(selection["candidates"], key=lambda c: (c["mean_auc"], c["mean_average_precision"]))
    assert best == selection["best"]
    model_rows = [r for r in manifest["metrics"]["evaluation"] if r["space"] == "model"]
    assert model_rows[0]["scoring"] == manifest["scoring"]["name"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "best"], "paper or auto"),
        (["--scoring", "cosine"], "l2, local-scaling, mutual-proximity"),
        (["--scoring", "l2", "--scoring-k", "0"], "from 1 to 1000"),
    ],
)
def test_bad_methods_and_scorings_exit_2_naming_the_allowed_values(
    small_catalogue_dir, tmp_path, extra, message
):
    args = ["train", "--data", str(small_catalogue_dir), "--out", str(tmp_path / "m"), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and message in result.output
