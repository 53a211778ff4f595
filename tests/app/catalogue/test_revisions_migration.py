"""Migration 0005 on a database written at 0004: revisions start at 0, library artists are
re-keyed by the one normalising rule (never onto a key another artist holds), and a
downgrade keeps the catalogue version's SQLite triggers."""

from __future__ import annotations

from alembic import command
from sqlalchemy import text

from app.catalogue.reads import catalogue_version
from app.db import alembic_config, create_db_engine


def _at_0004(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0004")
    with engine.begin() as c:
        c.execute(text("INSERT INTO catalogues (id, name, kind) VALUES (1, 'mine', 'library')"))
        artists = [
            (1, "name:björk", "Björk"),  # the old rule kept accents
            (2, "name:ac/dc", "AC/DC"),  # ... and punctuation
            (3, "name:guns n roses", "Guns N Roses"),
            (4, "name:guns n' roses", "Guns N' Roses"),  # its new key is artist 3's
            (5, "file:untagged.ogg", "unknown artist"),
        ]
        for artist_id, key, name in artists:
            c.execute(
                text(
                    "INSERT INTO artists (id, catalogue_id, source_key, name)"
                    " VALUES (:id, 1, :key, :name)"
                ),
                {"id": artist_id, "key": key, "name": name},
            )
        c.execute(
            text(
                "INSERT INTO songs (id, artist_id, features, source, catalogue_id, source_key,"
                " created_at) VALUES (1, 1, :blob, 'library', 1, 'a.ogg', '2026-12-01')"
            ),
            {"blob": b"\x00" * 518 * 4},
        )
    return engine


def test_upgrading_rekeys_library_artists_and_starts_every_revision_at_zero(tmp_path):
    engine = _at_0004(tmp_path)
    command.upgrade(alembic_config(engine), "head")
    with engine.connect() as c:
        keys = dict(c.execute(text("SELECT id, source_key FROM artists")).all())
        revisions = c.execute(text("SELECT revision, track_number FROM songs")).all()
    assert keys == {
        1: "name:bjork",
        2: "name:ac dc",
        3: "name:guns n roses",
        4: "name:guns n' roses",  # left as it was: the new key is taken
        5: "file:untagged.ogg",
    }
    assert revisions == [(0, None)]
    engine.dispose()


def test_downgrading_keeps_the_catalogue_version_triggers(tmp_path):
    from sqlalchemy.orm import Session

    engine = _at_0004(tmp_path)
    command.upgrade(alembic_config(engine), "head")
    command.downgrade(alembic_config(engine), "0004")
    with Session(engine) as session:
        before = catalogue_version(session)
    with engine.begin() as c:
        c.execute(text("UPDATE songs SET features = :blob"), {"blob": b"\x01" * 518 * 4})
    with Session(engine) as session:
        assert catalogue_version(session) != before
    engine.dispose()
