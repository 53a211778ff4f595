"""Imports never change rows they did not create: catalogues side by side, keyed by source."""

import dataclasses
import json
import shutil
import uuid

import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.catalogue import CatalogueError
from app.catalogue.importing import import_catalogue, source_of
from app.cli import app as cli
from app.db import open_database
from app.orm import Artist, Song, blobs_to_features
from training.data.fma import load_catalogue

SONG_COLUMNS = (
    "id, title, artist_id, genre_id, duration, album, features, source, created_at,"
    " catalogue_id, source_key, file_path, fingerprint"
)
ARTIST_COLUMNS = "id, name, location, latitude, longitude, catalogue_id, source_key"


def rows(engine, table: str, columns: str, where: str = "1 = 1") -> dict:
    with engine.connect() as connection:
        result = connection.execute(text(f"SELECT {columns} FROM {table} WHERE {where}"))
        return {row[0]: tuple(row) for row in result}


def snapshot(engine) -> tuple[dict, dict, dict]:
    return (
        rows(engine, "songs", SONG_COLUMNS),
        rows(engine, "artists", ARTIST_COLUMNS),
        rows(engine, "genres", "id, title, parent_id, top_level_id"),
    )


def import_library(engine, folder, **options):
    return import_catalogue(
        engine, load_catalogue(data_dir=folder), source=source_of(folder), **options
    )


def test_a_library_imported_beside_the_demo_catalogue_leaves_every_demo_row_as_it_was(
    settings, library_dir, catalogue
):
    engine = open_database(settings.database_url)
    songs, artists, genres = snapshot(engine)
    report = import_library(engine, library_dir)
    after_songs, after_artists, after_genres = snapshot(engine)
    engine.dispose()

    assert (report.added, report.kept) == (8, 0)
    assert {i: after_songs[i] for i in songs} == songs  # row by row, every column
    assert {i: after_artists[i] for i in artists} == artists
    assert after_genres == genres
    new = [after_songs[i] for i in set(after_songs) - set(songs)]
    assert len(new) == 8 and len(songs) == len(catalogue.tracks)
    assert {song[7] for song in new} == {"library"}
    assert sorted(song[11] for song in new) == sorted(p.name for p in library_files(library_dir))
    # 8 files by 7 named artists (Kevin MacLeod twice) and one file with no artist
    assert len({song[2] for song in new}) == 7
    assert not {song[2] for song in new} & set(artists)


def library_files(library_dir):
    root = json.loads((library_dir / "library.json").read_text())["root"]
    return sorted(p for p in __import__("pathlib").Path(root).iterdir() if p.suffix == ".ogg")


def test_importing_the_same_library_twice_changes_nothing(settings, library_dir):
    engine = open_database(settings.database_url)
    import_library(engine, library_dir)
    before = snapshot(engine)
    report = import_library(engine, library_dir)
    assert snapshot(engine) == before
    assert (report.added, report.kept) == (0, 8)
    engine.dispose()


def test_a_second_library_lands_beside_the_first_and_both_are_kept(settings, library_dir, tmp_path):
    second = tmp_path / "other-lib"
    shutil.copytree(library_dir, second)
    (second / "library.json").write_text(json.dumps({"root": str(tmp_path / "other")}))
    engine = open_database(settings.database_url)
    import_library(engine, library_dir)
    first = snapshot(engine)
    report = import_library(engine, second)
    after = snapshot(engine)
    engine.dispose()
    assert report.catalogue == "other" and report.added == 8
    assert {i: after[0][i] for i in first[0]} == first[0]
    assert {i: after[1][i] for i in first[1]} == first[1]
    assert len(after[0]) == len(first[0]) + 8


def test_another_folder_under_a_taken_name_is_refused_naming_the_way_out(
    settings, small_catalogue_dir, tmp_path
):
    other = tmp_path / "real-fma"
    shutil.copytree(small_catalogue_dir, other)
    env = {"MUSICSIM_DATABASE_URL": settings.database_url}
    runner = CliRunner()
    # the fixture imported the catalogue without naming its folder: this adopts it
    first = runner.invoke(cli, ["import", "--data", str(small_catalogue_dir)], env=env)
    assert first.exit_code == 0, first.output
    engine = open_database(settings.database_url)
    before = snapshot(engine)
    refused = runner.invoke(cli, ["import", "--data", str(other)], env=env)
    assert refused.exit_code == 2
    message = " ".join(refused.output.split())
    assert "'fma' was imported from" in message and "--replace" in message
    assert "--catalogue NAME" in message
    assert snapshot(engine) == before
    beside = runner.invoke(cli, ["import", "--data", str(other), "--catalogue", "copy"], env=env)
    assert beside.exit_code == 0, beside.output
    assert len(snapshot(engine)[0]) == 2 * len(before[0])
    engine.dispose()


def test_replace_swaps_one_catalogue_and_leaves_the_others(settings, library_dir, catalogue):
    engine = open_database(settings.database_url)
    import_library(engine, library_dir)
    demo_songs = rows(engine, "songs", SONG_COLUMNS, "source = 'fma'")
    smaller = dataclasses.replace(
        catalogue, tracks=catalogue.tracks.iloc[:10], features=catalogue.features[:10]
    )
    report = import_catalogue(engine, smaller, replace=True)
    assert (report.replaced, report.added) == (len(demo_songs), 10)
    assert len(rows(engine, "songs", "id", "source = 'library'")) == 8
    assert set(rows(engine, "songs", "id", "source = 'fma'")) == set(smaller.track_ids.tolist())
    engine.dispose()


def test_an_import_never_overwrites_a_cold_start_song(client, catalogue, settings):
    body = {"title": "Brand new", "artist": "New band", "features": [0.5] * 518}
    song = client.post("/songs", json=body).json()["id"]
    tracks = catalogue.tracks.copy()
    tracks.index = tracks.index - tracks.index.min() + song  # the first track's id is taken
    clashing = dataclasses.replace(catalogue, tracks=tracks)
    engine = open_database(settings.database_url)
    report = import_catalogue(engine, clashing, source=source_named("shifted"))
    engine.dispose()
    assert report.added == len(tracks)  # beside: the database gave them other ids
    assert client.get(f"/songs/{song}").json()["title"] == "Brand new"


def source_named(name):
    from app.catalogue.importing import CatalogueSource

    return CatalogueSource(name=name)


def test_a_library_folder_under_the_name_of_an_fma_catalogue_is_refused(settings, library_dir):
    engine = open_database(settings.database_url)
    with pytest.raises(CatalogueError, match="is an FMA-format catalogue"):
        import_library_named(engine, library_dir, "fma")
    engine.dispose()


def import_library_named(engine, folder, name):
    return import_catalogue(
        engine, load_catalogue(data_dir=folder), source=source_of(folder, name=name)
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request, tmp_path):
    """A database with no schema and no rows, on each database the service supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"musicsim_migrate_{uuid.uuid4().hex[:12]}"
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server.url).set(database=name).render_as_string(hide_password=False)
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_a_database_of_the_previous_schema_keeps_its_songs_as_the_fma_catalogue(
    empty_database_url, catalogue
):
    from alembic import command

    from app.catalogue.reads import catalogue_version
    from app.db import alembic_config, create_db_engine, upgrade_database

    engine = create_db_engine(empty_database_url)
    command.upgrade(alembic_config(engine), "0003")
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO artists (id, name) VALUES (5, 'old'), (9, 'new')"))
        connection.execute(
            text(
                "INSERT INTO songs (id, title, artist_id, features, source, created_at) VALUES"
                " (3, 'imported', 5, :f, 'fma', CURRENT_TIMESTAMP),"
                " (7, 'added', 9, :f, 'cold-start', CURRENT_TIMESTAMP)"
            ),
            {"f": b"\0" * 518 * 4},
        )
    upgrade_database(engine)
    assert rows(engine, "songs", "id, catalogue_id, source_key") == {
        3: (3, 1, "3"),
        7: (7, None, None),
    }
    assert rows(engine, "artists", "id, catalogue_id, source_key") == {
        5: (5, 1, "5"),
        9: (9, None, None),
    }
    assert rows(engine, "catalogues", "id, name, kind") == {1: (1, "fma", "fma")}
    # the recreated songs table still changes the catalogue version (migration 0002)
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        version = catalogue_version(session)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM songs WHERE id = 7"))
    with Session(engine) as session:
        assert catalogue_version(session) != version
    engine.dispose()


N_SONGS = 23


@pytest.fixture(scope="module")
def few_songs(catalogue):
    """The small catalogue's first 23 tracks (by fewer artists, so the tables differ in size)."""
    return dataclasses.replace(
        catalogue, features=catalogue.features[:N_SONGS], tracks=catalogue.tracks.iloc[:N_SONGS]
    )


# Chunks of 1 row, 23 - 1, 23, 23 + 1, and several of 5 with a remainder of 3.
@pytest.mark.parametrize("chunk_rows", [1, N_SONGS - 1, N_SONGS, N_SONGS + 1, 5])
def test_every_chunking_stores_each_song_once_as_the_files_hold_it(
    empty_database_url, few_songs, chunk_rows
):
    engine = open_database(empty_database_url)
    chunks = []
    try:
        assert import_catalogue(engine, few_songs, on_rows=chunks.append, chunk_rows=chunk_rows)
        with Session(engine) as session:
            songs = session.scalars(select(Song).order_by(Song.id)).all()
            artists = session.scalars(select(Artist.id).order_by(Artist.id)).all()
    finally:
        engine.dispose()
    full, rest = divmod(N_SONGS, chunk_rows)
    assert chunks == [chunk_rows] * full + ([rest] if rest else [])
    assert [s.id for s in songs] == few_songs.track_ids.tolist()
    assert [s.artist_id for s in songs] == few_songs.artist_ids.tolist()
    assert [s.title for s in songs] == few_songs.tracks["title"].tolist()
    assert artists == sorted(set(few_songs.artist_ids.tolist()))
    np.testing.assert_array_equal(
        blobs_to_features([s.features for s in songs]), few_songs.features
    )


def test_importing_again_in_other_chunks_changes_no_row(empty_database_url, few_songs):
    engine = open_database(empty_database_url)
    try:
        import_catalogue(engine, few_songs, chunk_rows=4)
        import_catalogue(engine, few_songs, chunk_rows=7)
        with Session(engine) as session:
            ids = session.scalars(select(Song.id).order_by(Song.id)).all()
    finally:
        engine.dispose()
    assert ids == few_songs.track_ids.tolist()
