"""`musicsim compare` and `musicsim train --config` on the small catalogue, a couple of epochs."""

import json

import numpy as np
from typer.testing import CliRunner

from app.cli import app as cli

TWO_EPOCHS = 'triplets = "{kind}"\nepochs = 2\nwidth = 32\n'


def write_configs(folder):
    (folder / "random.toml").write_text('name = "rnd"\n' + TWO_EPOCHS.format(kind="random"))
    (folder / "mined.toml").write_text('name = "bh"\n' + TWO_EPOCHS.format(kind="batch-hard"))
    (folder / "lda.toml").write_text('name = "lda"\nmethod = "lda"\nembedding_dim = 8\n')
    return [folder / f"{name}.toml" for name in ("random", "mined", "lda")]


def test_compare_scores_every_configuration_on_the_same_queries(small_catalogue_dir, tmp_path):
    configs = write_configs(tmp_path)
    args = ["compare", "--data", str(small_catalogue_dir), "--seeds", "2", "--json"]
    args += ["--train-artists", "30", "--train-artists", "all", "--out", str(tmp_path / "out")]
    for config in configs:
        args += ["--config", str(config)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    names = {"raw", "zscore", "rnd", "bh", "lda"}
    assert {r["name"] for r in report["records"]} == names
    assert len(report["records"]) == 2 * 2 * len(names)  # seeds x sizes x rows
    for seed in (0, 1):
        same = [r for r in report["records"] if r["seed"] == seed]
        assert len({(r["n_queries"], r["n_songs"]) for r in same}) == 1
    assert {r["n_train_artists"] for r in report["records"] if r["train_artists"] == 30} == {30}
    lda = [r for r in report["records"] if r["name"] == "lda" and r["train_artists"] == "all"]
    row = next(s for s in report["summary"] if s["name"] == "lda" and s["train_artists"] == "all")
    values = [r["mean_average_precision"] for r in lda]
    assert row["mean_average_precision_mean"] == np.mean(values)
    assert np.isclose(row["mean_average_precision_std"], np.std(values, ddof=1))
    assert "| lda | l2 | all (" in (tmp_path / "out" / "summary.md").read_text()
    for png in ("comparison-metrics.png", "comparison-size-sweep.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_names_an_unknown_configuration_field(small_catalogue_dir, tmp_path):
    (tmp_path / "bad.toml").write_text('name = "x"\nepochz = 3\n')
    result = CliRunner().invoke(
        cli, ["compare", "--data", str(small_catalogue_dir), "--config", str(tmp_path / "bad.toml")]
    )
    assert result.exit_code == 2 and "epochz" in result.output


def test_train_from_a_linear_configuration_writes_a_servable_bundle(small_catalogue_dir, tmp_path):
    _, _, lda = write_configs(tmp_path)
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--data",
            str(small_catalogue_dir),
            "--config",
            str(lda),
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["architecture"] == "linear" and manifest["model"]["embedding_dim"] == 8


def test_flags_typed_on_the_line_override_the_configuration(small_catalogue_dir, tmp_path):
    random, _, _ = write_configs(tmp_path)
    out = tmp_path / "m"
    args = ["train", "--data", str(small_catalogue_dir), "--config", str(random)]
    result = CliRunner().invoke(cli, [*args, "--out", str(out), "--epochs", "1", "--seed", "3"])
    assert result.exit_code == 0, result.output
    training = json.loads((out / "manifest.json").read_text())["training"]
    assert (training["epochs"], training["seed"], training["width"]) == (1, 3, 32)


def test_a_configuration_trained_with_a_scoring_records_it_and_scores_its_model_by_it(
    small_catalogue_dir, tmp_path
):
    _, _, lda = write_configs(tmp_path)
    out = tmp_path / "m"
    args = ["train", "--data", str(small_catalogue_dir), "--config", str(lda), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--scoring", "local-scaling", "--scoring-k", "7"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["scoring"]["name"], manifest["scoring"]["k"]) == ("local-scaling", 7)
    model_rows = [r for r in manifest["metrics"]["evaluation"] if r["space"] == "model"]
    assert [r["scoring"] for r in model_rows] == ["local-scaling"]


def test_the_printed_comparison_shows_each_rows_hubness(monkeypatch):
    import io

    from rich.console import Console

    from training import cli as training_cli

    row = {"name": "lda", "scoring": "local-scaling", "train_artists": "all", "n_seeds": 2}
    for metric in ("mean_auc", "mean_average_precision", "recall_at_10", "ndcg_at_10", "seconds"):
        row |= {f"{metric}_mean": 0.5, f"{metric}_std": 0.01}
    hubness = {"hubness_skewness": 1.23, "antihub_share": 0.04, "max_k_occurrence": 37.0,
               "coverage": 0.96}  # fmt: skip
    row |= {f"{m}_mean": v for m, v in hubness.items()}
    out = io.StringIO()
    monkeypatch.setattr(training_cli, "console", Console(file=out, width=300))
    training_cli.print_summary([row], title="t")
    (line,) = [x for x in out.getvalue().splitlines() if "local-scaling" in x]
    assert [c.strip() for c in line.strip("│┃ ").split("│")][-4:] == [
        "1.23",
        "0.04",
        "37.00",
        "0.96",
    ]
    assert "k-occ. skew" in out.getvalue() and "coverage" in out.getvalue()
