"""`musicsim library PATH`: scan, import, model; a re-run applies exactly what changed."""

import json
import shutil

import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from app.cli import app as cli
from app.db import open_database
from training.artefacts import load_bundle

VIBE = "Kevin_MacLeod_-_Vibe_Ace.ogg"
TRUMPET = "sorohanro_-_solo-trumpet-06.ogg"
WALTZ = "147793__setuniman__sweet-waltz-0i-22mi.ogg"


def songs_by_file(url) -> dict[str, tuple]:
    engine = open_database(url)
    with engine.connect() as connection:
        query = text(
            "SELECT file_path, id, title, artist_id, features, fingerprint FROM songs"
            " WHERE source = 'library'"
        )
        rows = {r[0]: tuple(r[1:]) for r in connection.execute(query)}
    engine.dispose()
    return rows


def run_library(folder, env, tmp_path):
    args = ["library", str(folder), "--jobs", "1", "--state", str(tmp_path / "state")]
    return CliRunner().invoke(cli, args, env=env)


@pytest.fixture
def library_env(tmp_path, music_folder):
    folder = tmp_path / "mymusic"
    shutil.copytree(music_folder, folder)
    env = {
        "MUSICSIM_DATABASE_URL": f"sqlite:///{tmp_path / 'my.db'}",
        "MUSICSIM_MODEL_DIR": str(tmp_path / "models" / "mymusic"),
        "COLUMNS": "400",  # rich wraps at the terminal width, even inside words
    }
    return folder, env


def test_a_rerun_adds_updates_and_removes_exactly_what_changed(library_env, tmp_path):
    folder, env = library_env
    first = run_library(folder, env, tmp_path)
    assert first.exit_code == 0, first.output
    before = songs_by_file(env["MUSICSIM_DATABASE_URL"])
    assert len(before) == 8
    bundle = load_bundle(tmp_path / "models" / "mymusic")
    manifest = json.loads((tmp_path / "models" / "mymusic" / "manifest.json").read_text())
    assert (
        manifest["selection"]["method"] == "zscore"
        and "fitted on all 8" in (manifest["selection"]["reason"])
    )
    # the z-score is the library's own: its mean is the mean of the 8 songs' features
    features = np.stack([np.frombuffer(r[3], "<f4") for r in before.values()])
    assert bundle.zscore.mean == pytest.approx(features.mean(axis=0), rel=1e-4, abs=1e-4)

    (folder / "again").mkdir()
    shutil.copyfile(folder / VIBE, folder / "again" / VIBE)  # a copy: same tags and sound
    shutil.copyfile(folder / WALTZ, folder / TRUMPET)  # changed content under a known name
    (folder / "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg").unlink()
    (folder / "broken.ogg").write_bytes(b"")  # zero bytes: skipped, named, never fatal
    second = run_library(folder, env, tmp_path)
    output = " ".join(second.output.split())
    assert second.exit_code == 1, second.output
    assert "1 added, 1 updated, 1 removed, 6 unchanged, 1 skipped" in output
    assert "broken.ogg" in output
    after = songs_by_file(env["MUSICSIM_DATABASE_URL"])
    assert set(after) == set(before) - {
        "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg"
    } | {f"again/{VIBE}"}
    for file in set(before) & set(after) - {TRUMPET}:
        assert after[file] == before[file]  # untouched rows, byte for byte
    assert after[TRUMPET][0] == before[TRUMPET][0]  # updated in place: the same id
    assert after[TRUMPET][3] == before[WALTZ][3]  # ... with the new sound's features
    assert f"near-duplicates: songs {after[VIBE][0]} and {after['again/' + VIBE][0]}" in output

    third = run_library(folder, env, tmp_path)
    assert "0 added, 0 updated, 0 removed, 8 unchanged" in " ".join(third.output.split())
    assert songs_by_file(env["MUSICSIM_DATABASE_URL"]) == after


@pytest.mark.parametrize("problem", ["missing", "file"])
def test_a_bad_library_root_is_a_clear_error(problem, tmp_path):
    root = tmp_path / "nothing"
    if problem == "file":
        root.write_text("not a folder")
    env = {"MUSICSIM_DATABASE_URL": f"sqlite:///{tmp_path / 'my.db'}"}
    result = CliRunner().invoke(cli, ["library", str(root)], env=env)
    assert result.exit_code == 2
    expected = "no such folder" if problem == "missing" else "not a folder"
    output = " ".join(result.output.split())  # the message wraps at the terminal's width
    assert expected in output and "Traceback" not in output


def test_the_demo_model_is_never_overwritten(tmp_path, bundle_dir, music_folder):
    env = {
        "MUSICSIM_DATABASE_URL": f"sqlite:///{tmp_path / 'my.db'}",
        "MUSICSIM_MODEL_DIR": str(bundle_dir),
    }
    result = CliRunner().invoke(cli, ["library", str(music_folder)], env=env)
    assert result.exit_code == 2
    assert "musicsim library did not make" in " ".join(result.output.split())
