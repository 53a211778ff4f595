"""The FMA import in chunks of rows: every chunking stores what the catalogue files hold."""

import dataclasses
import uuid

import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from app.catalogue.importing import import_catalogue
from app.db import open_database
from app.orm import Artist, Song, blobs_to_features

N_SONGS = 23


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    """A fresh database with the schema and no rows, on each database the service supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name = f"musicsim_import_{uuid.uuid4().hex[:12]}"
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server.url).set(database=name).render_as_string(hide_password=False)
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def few_songs(catalogue):
    """The small catalogue's first 23 tracks (by fewer artists, so the tables differ in size)."""
    return dataclasses.replace(
        catalogue, features=catalogue.features[:N_SONGS], tracks=catalogue.tracks.iloc[:N_SONGS]
    )


# Chunks of 1 row, 23 - 1, 23, 23 + 1, and several of 5 with a remainder of 3.
@pytest.mark.parametrize("chunk_rows", [1, N_SONGS - 1, N_SONGS, N_SONGS + 1, 5])
def test_every_chunking_stores_each_song_once_as_the_files_hold_it(
    empty_url, few_songs, chunk_rows
):
    engine = open_database(empty_url)
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


def test_importing_again_in_other_chunks_changes_no_row(empty_url, few_songs):
    engine = open_database(empty_url)
    try:
        import_catalogue(engine, few_songs, chunk_rows=4)
        import_catalogue(engine, few_songs, chunk_rows=7)
        with Session(engine) as session:
            ids = session.scalars(select(Song.id).order_by(Song.id)).all()
    finally:
        engine.dispose()
    assert ids == few_songs.track_ids.tolist()
