"""The README's offline commands, run as a user would (typer's runner, real files)."""

import json
import shutil

import pandas as pd
from paths import real_clip
from typer.testing import CliRunner

from app.cli import app as cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_demo_data_writes_the_asked_size(tmp_path):
    result = run("demo-data", "--out", str(tmp_path), "--tracks", "300", "--artists", "40")
    assert result.exit_code == 0, result.output
    tracks = pd.read_csv(tmp_path / "tracks.csv", index_col=0, header=[0, 1])
    assert len(tracks) == 300 and tracks[("artist", "id")].nunique() == 40


def test_demo_data_refuses_more_artists_than_tracks(tmp_path):
    result = run("demo-data", "--out", str(tmp_path), "--tracks", "5", "--artists", "9")
    assert result.exit_code == 2 and "error" in result.output


def test_train_then_evaluate_reports_the_three_spaces(small_catalogue_dir, tmp_path):
    bundle = tmp_path / "m"
    trained = run(
        "train", "--data", str(small_catalogue_dir), "--out", str(bundle), "--epochs", "3"
    )
    assert trained.exit_code == 0, trained.output
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {r["space"] for r in manifest["metrics"]["evaluation"]} == {"raw", "zscore", "model"}
    evaluated = run(
        "evaluate", "--data", str(small_catalogue_dir), "--model", str(bundle), "--json"
    )
    assert evaluated.exit_code == 0, evaluated.output
    body = json.loads(evaluated.stdout)
    assert [r["space"] for r in body["rows"]] == ["raw", "zscore", "model"]
    assert body["rows"] == manifest["metrics"]["evaluation"]  # same seed, same queries


def test_train_refuses_an_unknown_triplet_kind(small_catalogue_dir, tmp_path):
    result = run(
        "train", "--data", str(small_catalogue_dir), "--out", str(tmp_path), "--triplets", "hard"
    )
    assert result.exit_code == 2 and "triplet kind" in result.output


def test_paper_prints_the_four_rows_as_json(small_catalogue_dir, tmp_path):
    result = run(
        "paper", "--data", str(small_catalogue_dir), "--epochs", "2", "--json",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    spaces = [r["space"] for r in body["rows"]]
    assert spaces == ["raw", "zscore", "triplet-random", "triplet-genre"]
    assert all(0.0 <= r["mean_auc"] <= 1.0 and r["n_queries"] > 0 for r in body["rows"])
    assert (tmp_path / "triplet-genre" / "manifest.json").is_file()


def test_a_missing_data_folder_is_named(tmp_path):
    result = run("train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m"))
    assert result.exit_code == 2 and "file not found" in " ".join(result.output.split())


def test_extract_skips_a_broken_file_and_says_so_in_its_exit_status(tmp_path):
    clips = tmp_path / "in"
    clips.mkdir()
    shutil.copy(real_clip("Kevin_MacLeod_-_Vibe_Ace.ogg"), clips)
    (clips / "broken.ogg").write_bytes(b"not audio at all")
    result = run("extract", str(clips), "--out", str(tmp_path / "out"), "--jobs", "1")
    assert result.exit_code == 1
    assert "broken.ogg" in "".join(result.output.split())  # a long path wraps mid-name
    features = pd.read_csv(tmp_path / "out" / "features.csv", index_col=0, header=[0, 1, 2])
    assert len(features) == 1


def test_evaluate_scores_the_model_row_by_the_bundles_scoring(small_catalogue_dir, tmp_path):
    bundle = tmp_path / "m"
    data = ["--data", str(small_catalogue_dir)]
    trained = run(
        "train", *data, "--out", str(bundle), "--epochs", "2", "--scoring", "local-scaling"
    )
    assert trained.exit_code == 0, trained.output
    assert json.loads((bundle / "manifest.json").read_text())["scoring"]["name"] == "local-scaling"
    default = json.loads(run("evaluate", *data, "--model", str(bundle), "--json").stdout)["rows"]
    assert [(r["space"], r["scoring"]) for r in default] == [
        ("raw", "l2"),
        ("zscore", "l2"),
        ("model", "local-scaling"),
    ]
    args = ["evaluate", *data, "--model", str(bundle), "--json", "--scoring", "l2"]
    both = json.loads(run(*args, "--scoring", "local-scaling").stdout)["rows"]
    assert [(r["space"], r["scoring"]) for r in both][-2:] == [
        ("model", "l2"),
        ("model", "local-scaling"),
    ]
    assert both[-1] == default[-1] and both[-2]["mean_auc"] != both[-1]["mean_auc"]
    # --scoring-k alone re-scores the model row with the bundle's scoring at that k, as
    # naming that scoring with the same k does.
    own_k = ["evaluate", *data, "--model", str(bundle), "--json", "--scoring-k", "3"]
    at_3 = json.loads(run(*own_k).stdout)["rows"]
    named = json.loads(run(*own_k, "--scoring", "local-scaling").stdout)["rows"]
    assert at_3[-1] == named[-1] and at_3[-1]["mean_auc"] != default[-1]["mean_auc"]
    refused = run("evaluate", *data, "--model", str(bundle), "--scoring", "nicdm")
    assert refused.exit_code == 2 and "l2, local-scaling, mutual-proximity" in refused.output


def test_paper_bundles_record_the_one_scoring_asked(small_catalogue_dir, tmp_path):
    data = ["--data", str(small_catalogue_dir), "--epochs", "1", "--out"]
    asked = run("paper", *data, str(tmp_path / "one"), "--scoring", "local-scaling")
    several = run(
        "paper", *data, str(tmp_path / "two"), "--scoring", "l2", "--scoring", "local-scaling"
    )
    assert asked.exit_code == 0 and several.exit_code == 0, asked.output + several.output
    for out, expected in ((tmp_path / "one", "local-scaling"), (tmp_path / "two", "l2")):
        for name in ("triplet-random", "triplet-genre"):
            manifest = json.loads((out / name / "manifest.json").read_text())
            assert manifest["scoring"]["name"] == expected, (out, name)
