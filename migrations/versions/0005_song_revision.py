"""songs.revision, track_number and album_artist; library artists keyed by the one rule

revision counts the changes made to a song in place (PATCH /songs/{id}, or an
import that rewrites the row with other values): other processes serving the same
database compare it with what they indexed and re-read the songs whose revision
moved (app/index/follower.py). An index on it keeps that poll to the changed songs.

track_number and album_artist are read from a file's tags by `musicsim library`.

Library artists are keyed by their normalised name ("name:" + normalised(name));
the rule moved to app/catalogue/recordings.py, which also folds accents and
punctuation, so stored keys are rewritten with it. A key whose new form another
artist of the same catalogue already holds is left as it was (the unique index
forbids two), and that artist is matched by its old key no more: the next import
of its files moves them to the artist holding the new key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

from app.catalogue.recordings import normalised

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Migration 0002's SQLite triggers: recreating the songs table (downgrade) drops them.
_SQLITE_EVENTS = {"insert": "INSERT", "delete": "DELETE", "update": "UPDATE OF id, features"}
_SQLITE_NEW_TOKEN = "lower(hex(randomblob(16)))"


def upgrade() -> None:
    # Plain added columns: SQLite adds them in place, so 0002's triggers stay.
    op.add_column("songs", sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("songs", sa.Column("track_number", sa.Integer(), nullable=True))
    op.add_column("songs", sa.Column("album_artist", sa.String(length=1024), nullable=True))
    op.create_index("ix_songs_revision", "songs", ["revision"])
    _rekey_library_artists()


def _rekey_library_artists() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT a.id, a.catalogue_id, a.source_key FROM artists a"
            " JOIN catalogues c ON a.catalogue_id = c.id"
            " WHERE c.kind = 'library' AND a.source_key LIKE 'name:%'"
        )
    ).all()
    taken = {(catalogue, key) for _, catalogue, key in rows}
    for artist_id, catalogue, key in rows:
        old = key[len("name:") :]
        new = "name:" + (normalised(old) or old)
        if new == key or (catalogue, new) in taken:
            continue
        bind.execute(
            sa.text("UPDATE artists SET source_key = :key WHERE id = :id"),
            {"key": new, "id": artist_id},
        )
        taken.discard((catalogue, key))
        taken.add((catalogue, new))


def downgrade() -> None:
    # Artist keys stay in the new form: the old rule matched them the same way for
    # names without accents or punctuation, and a re-import re-keys the others.
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.drop_index("ix_songs_revision", table_name="songs")
    with op.batch_alter_table("songs", recreate="always" if sqlite else "auto") as batch:
        for column in ("album_artist", "track_number", "revision"):
            batch.drop_column(column)
    if sqlite:
        for name, event in _SQLITE_EVENTS.items():
            op.execute(f"DROP TRIGGER IF EXISTS songs_new_catalogue_version_{name}")
            op.execute(
                f"CREATE TRIGGER songs_new_catalogue_version_{name} AFTER {event} ON songs"
                f" BEGIN UPDATE catalogue_state SET version = {_SQLITE_NEW_TOKEN}; END"
            )
