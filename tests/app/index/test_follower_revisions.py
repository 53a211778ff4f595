"""The follower and changes in place: a PATCH through one process is served by the others.

In one process, `refresh_revised_songs` is checked against the database it reads
(which songs it re-reads, and that an unchanged table costs nothing); then two app
instances on one database (SQLite and PostgreSQL): a PATCH through one is served by
the other after its next poll, and not before (the README's bound, counted in polls).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from stand_in_embed import CountingEmbed, first_columns

from app.catalogue.importing import import_catalogue
from app.catalogue.reads import catalogue_version, read_index_rows, read_song_ids
from app.catalogue.writes import delete_songs, update_song
from app.db import open_database
from app.index.faiss_index import FaissSongIndex
from app.index.follower import RevisionsSeen, refresh_revised_songs
from app.main import create_app
from app.orm import Song

KEY = "s3cret"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture
def indexed(database_url):
    """A database holding the small catalogue and a 4-column index of all of it."""
    engine = open_database(database_url)
    with Session(engine) as session:
        rows, features = read_index_rows(session)
    index = FaissSongIndex(4)
    index.add(rows, first_columns(features))
    yield engine, index
    engine.dispose()


def _refresh(engine, index, seen, embed) -> int:
    with Session(engine) as session:
        version = catalogue_version(session)
        return len(refresh_revised_songs(session, index, embed, seen=seen, version=version))


def test_only_songs_changed_since_the_last_poll_are_re_read(indexed, catalogue):
    engine, index = indexed
    a, b, c = (int(i) for i in catalogue.track_ids[:3])
    seen, embed = RevisionsSeen(), CountingEmbed()
    assert _refresh(engine, index, seen, embed) == 0 and embed.sizes == []
    new_features = np.arange(518, dtype=np.float32)
    with Session(engine) as session:
        update_song(session, a, {"features": new_features})
        update_song(session, b, {"title": "Renamed"})
    assert _refresh(engine, index, seen, embed) == 2
    np.testing.assert_array_equal(index.embedding_of(a), new_features[:4])
    np.testing.assert_array_equal(index.embedding_of(b), catalogue.features[1, :4])
    assert _refresh(engine, index, seen, embed) == 0  # nothing changed since
    assert sum(embed.sizes) == 2
    with Session(engine) as session:
        update_song(session, a, {"album": "Again"})
    assert _refresh(engine, index, seen, embed) == 1  # a second change of the same song


def test_a_deletion_that_leaves_the_revision_sum_unchanged_still_shows_a_change(indexed, catalogue):
    # b (revision 1) is deleted and c goes from 0 to 1: the count and sum of revisions
    # stay as they were, and only the catalogue version tells the poll to look.
    engine, index = indexed
    b, c = (int(i) for i in catalogue.track_ids[1:3])
    seen = RevisionsSeen()
    with Session(engine) as session:
        update_song(session, b, {"title": "Soon gone"})
    assert _refresh(engine, index, seen, CountingEmbed()) == 1
    with Session(engine) as session:
        delete_songs(session, [b])
        update_song(session, c, {"genre": None})
    index.remove(np.array([b]))  # what the follower's deletion pass does
    assert _refresh(engine, index, seen, CountingEmbed()) == 1
    assert c in seen.revisions and b not in seen.revisions


def test_importing_the_same_rows_again_moves_no_revision_and_new_values_move_one(
    database_url, catalogue
):
    engine = open_database(database_url)
    import_catalogue(engine, catalogue)  # the same catalogue the database holds
    with Session(engine) as session:
        assert set(session.scalars(select(Song.revision)).all()) == {0}
    features = catalogue.features.copy()
    features[4] += 1.0
    import_catalogue(engine, dataclasses.replace(catalogue, features=features))
    with Session(engine) as session:
        revised = session.execute(select(Song.id, Song.revision).where(Song.revision > 0)).all()
    assert revised == [(int(catalogue.track_ids[4]), 1)]
    engine.dispose()


@pytest.fixture
def two_processes(settings):
    """Two app instances on one database; only the test's explicit polls run."""
    quiet = settings.model_copy(
        update={"sync_interval_seconds": 3600, "index_cache_dir": None, "api_key": KEY}
    )
    with TestClient(create_app(quiet)) as writer, TestClient(create_app(quiet)) as reader:
        yield writer, reader


def _ids(answer) -> list[int]:
    return [r["id"] for r in answer.json()["results"]]


def test_new_features_patched_through_one_process_are_served_by_the_other_after_one_poll(
    two_processes, catalogue
):
    writer, reader = two_processes
    song, target = int(catalogue.track_ids[0]), int(catalogue.track_ids[40])
    follower = reader.app.state.service.follower
    follower.poll_once()
    before = reader.app.state.service.index.embedding_of(song).copy()
    moved = catalogue.features[40] * 1.01  # beside song `target`, not a copy of it
    patched = writer.patch(f"/songs/{song}", json={"features": moved.tolist()}, headers=HEADERS)
    assert patched.status_code == 200, patched.text
    index = reader.app.state.service.index
    np.testing.assert_array_equal(index.embedding_of(song), before)  # not before a poll
    follower.poll_once()
    expected = reader.app.state.service.bundle.embed(moved[None, :].astype(np.float32))[0]
    np.testing.assert_allclose(index.embedding_of(song), expected, rtol=1e-6)
    assert _ids(reader.get(f"/songs/{target}/similar", params={"k": 1})) == [song]
    served = {"k": 10}
    assert _ids(reader.get(f"/songs/{song}/similar", params=served)) == _ids(
        writer.get(f"/songs/{song}/similar", params=served)
    )


def test_a_patched_genre_is_followed_by_the_other_process_filters(two_processes, catalogue):
    writer, reader = two_processes
    song = int(catalogue.track_ids[0])
    current = reader.get(f"/songs/{song}").json()["genre"]
    other_genre = next(g for g in reader.get("/genres").json()["genres"] if g != current)
    query = int(catalogue.track_ids[1])
    wide = {"k": min(len(catalogue.track_ids), 1000), "genre": other_genre}
    assert reader.app.state.service.follower.poll_once() == 0

    def found() -> bool:
        return song in _ids(reader.get(f"/songs/{query}/similar", params=wide))

    assert not found()
    body = {"genre": other_genre}
    assert writer.patch(f"/songs/{song}", json=body, headers=HEADERS).status_code == 200
    assert not found()  # the reader has not polled yet
    reader.app.state.service.follower.poll_once()
    assert found()


def test_every_song_of_the_database_keeps_one_entry_after_patches_are_followed(
    two_processes, catalogue
):
    writer, reader = two_processes
    for song in catalogue.track_ids[:5]:
        body = {"title": f"New title {song}"}
        assert writer.patch(f"/songs/{song}", json=body, headers=HEADERS).status_code == 200
    reader.app.state.service.follower.poll_once()
    engine = open_database(reader.app.state.service.settings.database_url)
    with Session(engine) as session:
        stored = read_song_ids(session)
    engine.dispose()
    index = reader.app.state.service.index
    assert sorted(index.ids().tolist()) == stored.tolist()
    assert reader.get(f"/songs/{catalogue.track_ids[0]}").json()["title"].startswith("New title")
    first = int(catalogue.track_ids[0])
    body = {"track_number": 3, "album_artist": "The Band"}
    assert writer.patch(f"/songs/{first}", json=body, headers=HEADERS).status_code == 200
    shown = reader.get(f"/songs/{first}").json()
    assert (shown["track_number"], shown["album_artist"]) == (3, "The Band")
    for bad in ({"album": "a\x00b"}, {"track_number": 0}):  # NUL: PostgreSQL cannot store it
        assert writer.patch(f"/songs/{first}", json=bad, headers=HEADERS).status_code == 422


def test_a_process_does_not_replace_again_the_entry_its_own_patch_of_features_wrote(
    two_processes, catalogue, monkeypatch
):
    # Replacing an entry is a removal then an addition: a search in between would miss
    # the song, so the writer's own follower must leave what its PATCH indexed alone.
    writer, _ = two_processes
    song = int(catalogue.track_ids[0])
    body = {"features": (catalogue.features[40] * 1.01).tolist()}
    assert writer.patch(f"/songs/{song}", json=body, headers=HEADERS).status_code == 200
    index = writer.app.state.service.index
    removed: list = []
    original = index.remove
    monkeypatch.setattr(index, "remove", lambda ids: removed.append(list(ids)) or original(ids))
    writer.app.state.service.follower.poll_once()
    assert removed == [] or all(len(r) == 0 for r in removed)
    assert song in index
