"""Song metadata, cold-start additions, health, evaluation, and the schema migration."""

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect
from typer.testing import CliRunner

from app.cli import app as cli
from app.db import open_database
from app.main import create_app
from training.artefacts import BundleError


@pytest.mark.parametrize("index_backend", ["faiss", "milvus"])
def test_health_reports_songs_and_model(client, catalogue, bundle, index_backend):
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["songs_indexed"] == len(catalogue.tracks)
    assert body["index_kind"] == {"faiss": "flat", "milvus": "milvus"}[index_backend]
    assert body["model"]["manifest_sha256"] == bundle.manifest_sha256


def test_read_song_returns_its_metadata(client, catalogue):
    tid = int(catalogue.track_ids[10])
    row = catalogue.tracks.loc[tid]
    body = client.get(f"/songs/{tid}").json()
    assert body["id"] == tid and body["title"] == row["title"]
    assert body["artist"] == {"id": int(row["artist_id"]), "name": row["artist_name"]}
    assert body["genre"] == row["genre"] and body["source"] == "fma"


def test_a_song_carries_its_album_title_from_tracks_csv(client, catalogue, small_catalogue_dir):
    tracks = pd.read_csv(small_catalogue_dir / "tracks.csv", index_col=0, header=[0, 1])
    for tid in catalogue.track_ids[:20]:
        expected = tracks.loc[int(tid), ("album", "title")]
        album = client.get(f"/songs/{int(tid)}").json()["album"]
        assert album == (None if pd.isna(expected) else str(expected))
    assert tracks[("album", "title")].notna().any()


def test_unknown_song_is_404(client):
    response = client.get("/songs/999999999")
    assert response.status_code == 404 and "999999999" in response.json()["detail"]


def new_song(catalogue, **overrides):
    features = (catalogue.features[30] * 1.01).tolist()
    return {"title": "Brand new", "artist": "Nobody Yet", "features": features, **overrides}


@pytest.mark.parametrize("index_backend", ["faiss", "milvus"])
def test_an_added_song_is_found_and_survives_a_restart(client, catalogue, settings):
    response = client.post(
        "/songs", json=new_song(catalogue, genre=catalogue.tracks["genre"].dropna().iloc[0])
    )
    assert response.status_code == 201
    song = response.json()["id"]
    assert song not in set(catalogue.track_ids.tolist())
    near_original = client.get(
        f"/songs/{int(catalogue.track_ids[30])}/similar", params={"k": 1}
    ).json()
    assert near_original["results"][0]["id"] == song
    with TestClient(create_app(settings)) as again:
        assert again.get("/health").json()["songs_indexed"] == len(catalogue.tracks) + 1
        body = again.get(f"/songs/{song}/similar", params={"k": 1}).json()
        assert body["query"]["source"] == "cold-start"
        assert body["results"][0]["id"] == int(catalogue.track_ids[30])


def test_an_artist_name_is_reused_and_an_id_must_exist(client, catalogue):
    first = client.post("/songs", json=new_song(catalogue)).json()["id"]
    second = client.post("/songs", json=new_song(catalogue, title="Second")).json()["id"]
    artists = {client.get(f"/songs/{s}").json()["artist"]["id"] for s in (first, second)}
    assert len(artists) == 1
    response = client.post("/songs", json=new_song(catalogue, artist=987654321))
    assert response.status_code == 422 and "artist 987654321 does not exist" in response.text


@pytest.mark.parametrize("index_backend", ["faiss", "milvus"])
def test_a_new_artist_can_bring_a_location(client, catalogue):
    body = new_song(
        catalogue, artist="Local Band", latitude=48.85, longitude=2.35, location="Paris"
    )
    song = client.post("/songs", json=body).json()["id"]
    results = client.get(
        f"/songs/{int(catalogue.track_ids[30])}/similar",
        params={"k": 3, "near": "48.85,2.35", "radius_km": 1},
    ).json()["results"]
    assert [r["id"] for r in results] == [song]


def test_writes_need_the_api_key_when_one_is_set(settings, catalogue):
    settings = settings.model_copy(update={"api_key": "s3cret"})
    with TestClient(create_app(settings)) as client:
        assert client.post("/songs", json=new_song(catalogue)).status_code == 401
        wrong = client.post("/songs", json=new_song(catalogue), headers={"X-API-Key": "nope"})
        assert wrong.status_code == 403
        right = client.post("/songs", json=new_song(catalogue), headers={"X-API-Key": "s3cret"})
        assert right.status_code == 201
        assert client.get("/health").status_code == 200


def test_evaluate_equals_the_command_line(
    client, small_catalogue_dir, bundle_dir, bundle, catalogue
):
    # A cold-start song by an evaluation artist must not move the catalogue's figure.
    eval_artist = int(bundle.split.eval[0])
    extra = new_song(catalogue, artist=eval_artist)
    assert client.post("/songs", json=extra).status_code == 201
    result = CliRunner().invoke(
        cli, ["evaluate", "--data", str(small_catalogue_dir), "--model", str(bundle_dir), "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = {r["space"]: r for r in json.loads(result.stdout)["rows"]}
    for space in ("raw", "zscore", "model"):
        body = client.post("/evaluate", json={"space": space, "seed": 0}).json()
        for metric in ("mean_auc", "mean_average_precision", "recall_at_10", "ndcg_at_10"):
            assert body[metric] == rows[space][metric]
        assert body["n_queries"] == rows[space]["n_queries"]
        assert body["n_songs"] == json.loads(result.stdout)["n_songs"]


def test_evaluate_scores_a_posted_labelled_set(client):
    # Two tight, far-apart artists: a perfect ranking in any space that preserves order.
    rng = np.random.default_rng(0)
    base = rng.normal(size=518)
    songs = [
        {"artist": "a", "features": (base + 0.001 * rng.normal(size=518)).tolist()}
        for _ in range(3)
    ]
    songs += [
        {"artist": "b", "features": (base + 50 + 0.001 * rng.normal(size=518)).tolist()}
        for _ in range(3)
    ]
    body = client.post("/evaluate", json={"space": "raw", "songs": songs}).json()
    # Each query's two same-artist songs come first: AP, recall@10 and nDCG@10 are 1.
    assert body == {
        "mean_auc": 1.0,
        "n_queries": 2,
        "n_songs": 6,
        "space": "raw",
        "mean_average_precision": 1.0,
        "recall_at_10": 1.0,
        "ndcg_at_10": 1.0,
        # Six songs: every top-10 list holds all five others, so every song is in five lists.
        "scoring": "l2",
        "scoring_k": 10,  # raw is ranked by l2, whose k is the default (unused by l2)
        "hubness_skewness": 0.0,
        "antihub_share": 0.0,
        "max_k_occurrence": 5,
        "coverage": 1.0,
    }
    every = client.post("/evaluate", json={"space": "raw", "songs": songs, "every_track": True})
    assert every.json()["n_queries"] == 6 and every.json()["mean_auc"] == 1.0


def test_the_migration_creates_the_schema_from_empty(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_database(url).dispose()
    engine = create_engine(url)
    tables = set(inspect(engine).get_table_names())
    assert {"artists", "genres", "songs", "alembic_version"} <= tables
    columns = {c["name"] for c in inspect(engine).get_columns("songs")}
    assert {
        "id",
        "title",
        "artist_id",
        "genre_id",
        "duration",
        "features",
        "source",
        "created_at",
    } <= columns
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_importing_twice_leaves_the_same_rows(settings, catalogue):
    from app.catalogue.importing import import_catalogue

    engine = open_database(settings.database_url)
    count = "SELECT COUNT(*), SUM(id), COUNT(DISTINCT artist_id) FROM songs"
    with engine.connect() as connection:
        before = connection.exec_driver_sql(count).one()
    import_catalogue(engine, catalogue)
    with engine.connect() as connection:
        assert connection.exec_driver_sql(count).one() == before
    assert before[0] == len(catalogue.tracks)


def test_the_service_refuses_to_start_without_a_valid_bundle(settings, tmp_path):
    broken = settings.model_copy(update={"model_dir": tmp_path / "no-such-bundle"})
    with (
        pytest.raises(BundleError, match="manifest.json not found"),
        TestClient(create_app(broken)),
    ):
        pass


def test_serve_names_a_bad_bundle_and_exits(tmp_path):
    result = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "manifest.json not found" in result.output


def test_a_bad_setting_is_named_and_nothing_starts(monkeypatch):
    monkeypatch.setenv("MUSICSIM_MAX_K", "lots")
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2 and "MUSICSIM_MAX_K" in result.output


def _moved_to_test_importing(client, catalogue, settings):
    import dataclasses

    from app.catalogue import CatalogueError
    from app.catalogue.importing import import_catalogue

    song = client.post("/songs", json=new_song(catalogue)).json()["id"]
    tracks = catalogue.tracks.copy()
    tracks.index = tracks.index - tracks.index.min() + song  # the first track takes its id
    clashing = dataclasses.replace(catalogue, tracks=tracks)
    engine = open_database(settings.database_url)
    with pytest.raises(CatalogueError, match="belong to cold-start songs"):
        import_catalogue(engine, clashing)
    assert client.get(f"/songs/{song}").json()["title"] == "Brand new"


def test_serve_refuses_a_corrupt_bundle_naming_the_file(bundle_dir, tmp_path):
    import shutil

    broken = tmp_path / "bundle"
    shutil.copytree(bundle_dir, broken)
    (broken / "zscore.safetensors").write_bytes(b"\0" * 64)
    result = CliRunner().invoke(cli, ["serve", "--model", str(broken)])
    assert result.exit_code == 2
    assert "zscore.safetensors does not match the SHA-256" in " ".join(result.output.split())


def test_musicsim_import_into_the_configured_database_is_idempotent(
    settings, small_catalogue_dir, catalogue
):
    # settings' database holds the catalogue already: importing it again changes nothing
    env = {"MUSICSIM_DATABASE_URL": settings.database_url}
    result = CliRunner().invoke(cli, ["import", "--data", str(small_catalogue_dir)], env=env)
    assert result.exit_code == 0, result.output
    engine = open_database(settings.database_url)
    with engine.connect() as connection:
        count, cold = connection.exec_driver_sql(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE source = 'cold-start') FROM songs"
        ).one()
    engine.dispose()
    assert (count, cold) == (len(catalogue.tracks), 0)


def test_concurrent_adds_of_one_new_artist_create_it_once(settings, catalogue):
    import threading

    # Two processes' worth of apps, four writers each, all naming the same new artist.
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        start = threading.Barrier(8)
        answers: list = []

        def write(client, n):
            start.wait()
            answers.append(client.post("/songs", json=new_song(catalogue, title=f"Race {n}")))

        threads = [
            threading.Thread(target=write, args=(one if n % 2 else two, n)) for n in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
        artists = {one.get(f"/songs/{a.json()['id']}").json()["artist"]["id"] for a in answers}
        assert len(artists) == 1
