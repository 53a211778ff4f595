"""catalogues and source identities: imports never overwrite rows they did not create

Each imported catalogue gets a row in `catalogues` (a name, a kind, where it was
read from, and for a music library its root folder). Songs and artists carry the
catalogue they came from and their key inside it (FMA: its track or artist id;
a library: the file's path relative to the root), unique per catalogue, while the
database allocates their ids. Songs keep the file they were analysed from and its
content fingerprint. Rows stored before this migration were all imported from
FMA-format folders (or added at run time): they become the catalogue "fma", with
their id as their key. Cold-start songs and the artists only they use belong to
no catalogue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Migration 0002's SQLite triggers: recreating the songs table drops them.
_SQLITE_EVENTS = {"insert": "INSERT", "delete": "DELETE", "update": "UPDATE OF id, features"}
_SQLITE_NEW_TOKEN = "lower(hex(randomblob(16)))"


def upgrade() -> None:
    op.create_table(
        "catalogues",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.String(length=4096), nullable=True),
        sa.Column("root", sa.String(length=4096), nullable=True),
        sa.CheckConstraint("kind IN ('fma', 'library')", name=op.f("ck_catalogues_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalogues")),
        sa.UniqueConstraint("name", name=op.f("uq_catalogues_name")),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    # artists: plain added columns (recreating the table would trip songs' foreign key).
    op.add_column("artists", sa.Column("catalogue_id", sa.Integer(), nullable=True))
    op.add_column("artists", sa.Column("source_key", sa.String(length=1024), nullable=True))
    if not sqlite:
        op.create_foreign_key(
            op.f("fk_artists_catalogue_id_catalogues"),
            "artists",
            "catalogues",
            ["catalogue_id"],
            ["id"],
        )
    op.create_index(
        "ux_artists_catalogue_source_key", "artists", ["catalogue_id", "source_key"], unique=True
    )
    with op.batch_alter_table("songs", recreate="always" if sqlite else "auto") as batch:
        batch.add_column(sa.Column("catalogue_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("source_key", sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column("file_path", sa.String(length=4096), nullable=True))
        batch.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
        batch.create_foreign_key(
            op.f("fk_songs_catalogue_id_catalogues"), "catalogues", ["catalogue_id"], ["id"]
        )
        batch.drop_constraint(op.f("ck_songs_source"), type_="check")
        batch.create_check_constraint(
            op.f("ck_songs_source"), "source IN ('fma', 'library', 'cold-start')"
        )
    op.create_index(
        "ux_songs_catalogue_source_key", "songs", ["catalogue_id", "source_key"], unique=True
    )
    op.create_index("ix_songs_catalogue_id", "songs", ["catalogue_id"])
    if sqlite:
        _recreate_sqlite_triggers()
    _adopt_existing_rows()


def _recreate_sqlite_triggers() -> None:
    for name, event in _SQLITE_EVENTS.items():
        op.execute(f"DROP TRIGGER IF EXISTS songs_new_catalogue_version_{name}")
        op.execute(
            f"CREATE TRIGGER songs_new_catalogue_version_{name} AFTER {event} ON songs"
            f" BEGIN UPDATE catalogue_state SET version = {_SQLITE_NEW_TOKEN}; END"
        )


def _adopt_existing_rows() -> None:
    """Songs imported before this migration become catalogue "fma", keyed by their id."""
    bind = op.get_bind()
    if not bind.execute(sa.text("SELECT 1 FROM songs WHERE source = 'fma' LIMIT 1")).first():
        return
    bind.execute(sa.text("INSERT INTO catalogues (name, kind) VALUES ('fma', 'fma')"))
    catalogue = bind.execute(sa.text("SELECT id FROM catalogues WHERE name = 'fma'")).scalar_one()
    bind.execute(
        sa.text(
            "UPDATE songs SET catalogue_id = :c, source_key = CAST(id AS VARCHAR(32))"
            " WHERE source = 'fma'"
        ),
        {"c": catalogue},
    )
    bind.execute(
        sa.text(
            "UPDATE artists SET catalogue_id = :c, source_key = CAST(id AS VARCHAR(32))"
            " WHERE id IN (SELECT artist_id FROM songs WHERE source = 'fma')"
        ),
        {"c": catalogue},
    )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.drop_index("ix_songs_catalogue_id", table_name="songs")
    op.drop_index("ux_songs_catalogue_source_key", table_name="songs")
    op.execute("DELETE FROM songs WHERE source = 'library'")
    with op.batch_alter_table("songs", recreate="always" if sqlite else "auto") as batch:
        batch.drop_constraint(op.f("fk_songs_catalogue_id_catalogues"), type_="foreignkey")
        batch.drop_constraint(op.f("ck_songs_source"), type_="check")
        batch.create_check_constraint(op.f("ck_songs_source"), "source IN ('fma', 'cold-start')")
        for column in ("fingerprint", "file_path", "source_key", "catalogue_id"):
            batch.drop_column(column)
    if sqlite:
        _recreate_sqlite_triggers()
    op.drop_index("ux_artists_catalogue_source_key", table_name="artists")
    if not sqlite:
        op.drop_constraint(op.f("fk_artists_catalogue_id_catalogues"), "artists")
    op.drop_column("artists", "source_key")
    op.drop_column("artists", "catalogue_id")
    op.drop_table("catalogues")
