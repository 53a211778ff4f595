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


def test_a_library_of_many_named_artists_gets_a_selected_model_and_keeps_its_tags(
    tmp_path, monkeypatch
):
    # The scan is faked (analysing 240 real files would take minutes): a synthetic
    # subset written to a temporary folder, as analysed tracks with their tags.
    from fastapi.testclient import TestClient

    import training.audio.library as library_scan
    from app.config import Settings
    from app.main import create_app
    from training.audio.library import LibraryScan, LibraryTrack
    from training.data.fma import load_catalogue
    from training.data.synthetic.catalogue import write_demo_catalogue

    write_demo_catalogue(out_dir=tmp_path / "demo", n_tracks=240, n_artists=30, seed=5)
    demo = load_catalogue(data_dir=tmp_path / "demo")
    folder = tmp_path / "bigmusic"
    folder.mkdir()
    tracks = [
        LibraryTrack(
            file=f"{artist}/{n:03d}.flac",
            features=demo.features[n],
            fingerprint=f"{n:064x}",
            duration=30.0,
            title=f"Song {n}",
            artist=f"Artist {artist}",
            album=f"Album of {artist}",
            album_artist=f"Band {artist}",
            track_number=n % 12 + 1,
        )
        for n, artist in enumerate(demo.artist_ids.tolist())
    ]
    monkeypatch.setattr(
        library_scan,
        "scan_library",
        lambda root, **_: LibraryScan(root=root, tracks=tracks, analysed=len(tracks)),
    )
    env = {
        "MUSICSIM_DATABASE_URL": f"sqlite:///{tmp_path / 'big.db'}",
        "MUSICSIM_MODEL_DIR": str(tmp_path / "models" / "big"),
        "COLUMNS": "400",
    }
    result = run_library(folder, env, tmp_path)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "models" / "big" / "manifest.json").read_text())
    chosen = manifest["selection"]
    assert len(chosen["auto"]["candidates"]) == 9  # z-score, LDA, NCA x 3 scorings
    assert chosen["method"] == chosen["auto"]["best"]["name"]
    output = " ".join(result.output.split())  # lines wrap where the temporary path is long
    assert "validation AUC" in output and "musicsim train --method auto" in output

    settings = Settings(
        model_dir=tmp_path / "models" / "big",
        database_url=env["MUSICSIM_DATABASE_URL"],
        index_cache_dir=None,
        _env_file=None,
    )
    with TestClient(create_app(settings)) as client:
        songs = client.get("/songs", params={"limit": 100}).json()["items"]
        by_title = {s["title"]: s for s in songs}
        song = by_title["Song 13"]
        assert (song["track_number"], song["album_artist"]) == (2, f"Band {demo.artist_ids[13]}")
        one = client.get(f"/songs/{song['id']}").json()
        assert (one["track_number"], one["album_artist"], one["album"]) == (
            2,
            f"Band {demo.artist_ids[13]}",
            f"Album of {demo.artist_ids[13]}",
        )
        results = client.get(f"/songs/{song['id']}/similar", params={"k": 20}).json()["results"]
        for item in results:
            n = int(item["title"].removeprefix("Song "))
            assert item["track_number"] == n % 12 + 1
            assert item["album_artist"] == f"Band {demo.artist_ids[n]}"
