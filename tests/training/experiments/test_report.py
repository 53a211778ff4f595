"""Reports of `musicsim train` and `musicsim paper`: figures that are real PNGs, a page
that embeds them and holds the measured numbers, and bundles that still load."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from app.cli import app as cli
from training.artefacts import load_bundle
from training.evaluation.maps import principal_plane
from training.experiments.paper import PAPER_TABLE1
from training.experiments.report import song_map

FIGURES = ("loss.png", "roc.png", "map.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def trained(small_catalogue_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train-report") / "m"
    run("train", "--data", str(small_catalogue_dir), "--out", str(out), "--epochs", "3",
        "--triplets", "genre")  # fmt: skip
    return out


@pytest.fixture(scope="module")
def paper_out(small_catalogue_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("paper-report")
    run("paper", "--data", str(small_catalogue_dir), "--out", str(out), "--epochs", "2")
    return out


def assert_is_a_drawn_png(path: Path, *, min_width: int = 500, min_height: int = 400):
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        image.verify()  # checks the chunks' CRCs
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= min_width and image.height >= min_height, image.size
        assert image.width <= 4000 and image.height <= 4000, image.size
        grey = np.asarray(image.convert("L"), dtype=np.float64)
    assert (grey < 200).mean() > 0.01, f"{path} is almost blank"


def table_rows(report: str) -> dict[str, list[str]]:
    rows = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and re.fullmatch(r"\d\.\d{3}", cells[1]):
            rows[cells[0]] = cells[1:]
    return rows


def test_train_writes_figures_and_a_report_beside_a_bundle_that_still_loads(trained):
    report_dir = trained / "report"
    for name in FIGURES:
        assert_is_a_drawn_png(report_dir / name)
    assert load_bundle(trained).manifest["name"] == "m"  # report/ is no part of the hashes


def test_train_report_embeds_the_figures_and_holds_the_measured_numbers(trained):
    text = (trained / "report" / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in text  # Markdown image links, relative to report.md
    manifest = json.loads((trained / "manifest.json").read_text())
    rows = table_rows(text)
    assert list(rows) == ["raw", "zscore", "model"]
    for measured in manifest["metrics"]["evaluation"]:
        mean_auc, area, queries, paper = rows[measured["space"]]
        assert mean_auc == f"{measured['mean_auc']:.3f}"
        assert queries == f"{measured['n_queries']:,}"
        # The averaged ROC's area is the mean AUC computed another way: grid error <= 0.0005,
        # plus at most 0.0005 from printing it with three decimals.
        assert abs(float(area) - measured["mean_auc"]) <= 0.001 + 1e-12
    assert rows["model"][3] == f"{PAPER_TABLE1['triplet-genre']:.3f}"  # a genre-triplet run
    losses = manifest["losses"]
    assert f"loss {losses[0]:.4f} in the first epoch, {losses[-1]:.4f} in the last" in text


def test_paper_report_compares_the_four_spaces_of_table1(paper_out):
    text = (paper_out / "report" / "report.md").read_text()
    table = json.loads((paper_out / "table1.json").read_text())
    rows = table_rows(text)
    assert list(rows) == ["raw", "zscore", "triplet-random", "triplet-genre"]
    for measured in table["rows"]:
        cells = rows[measured["space"]]
        assert cells[0] == f"{measured['mean_auc']:.3f}"
        assert cells[3] == f"{PAPER_TABLE1[measured['space']]:.3f}"
    for name in FIGURES:
        assert_is_a_drawn_png(paper_out / "report" / name)
    with Image.open(paper_out / "report" / "map.png") as image:
        assert image.width > image.height  # one panel per model, side by side
    for name in ("triplet-random", "triplet-genre"):
        load_bundle(paper_out / name)


def test_principal_components_carry_the_largest_variances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 5.0
    xy = principal_plane(x)
    eigenvalues = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    np.testing.assert_allclose(np.var(xy, axis=0, ddof=1), eigenvalues[:2], rtol=1e-9)
    assert abs(np.corrcoef(xy.T)[0, 1]) < 1e-9  # the two axes are uncorrelated


def test_the_map_highlights_the_artists_with_most_songs():
    artists = np.array([7, 7, 7, 3, 3, 3, 9, 9, 9, 9, 1, 2, 5, 5])
    names = np.array([f"artist {a}" for a in artists])
    genres = np.array(["Rock"] * 10 + [None, "", "Pop", "Pop"], dtype=object)
    placed = song_map(np.random.default_rng(0).normal(size=(14, 4)), genres, artists, names=names)
    # 9 has four songs; 3 and 7 three each (lower id first); then 5 with two.
    assert placed.highlighted == {9: "artist 9", 3: "artist 3", 7: "artist 7", 5: "artist 5"}
    assert placed.xy.shape == (14, 2)
    assert list(placed.genres[10:12]) == ["(no top-level genre)"] * 2
