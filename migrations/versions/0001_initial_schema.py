"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "artists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("location", sa.String(length=512), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artists")),
    )
    op.create_table(
        "genres",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("top_level_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genres")),
    )
    op.create_table(
        "songs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=1024), nullable=True),
        sa.Column("artist_id", sa.Integer(), nullable=False),
        sa.Column("genre_id", sa.Integer(), nullable=True),
        sa.Column("duration", sa.Float(), nullable=True),
        sa.Column("features", sa.LargeBinary(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("source IN ('fma', 'cold-start')", name=op.f("ck_songs_source")),
        sa.CheckConstraint("length(features) = 2072", name=op.f("ck_songs_features_length")),
        sa.ForeignKeyConstraint(
            ["artist_id"], ["artists.id"], name=op.f("fk_songs_artist_id_artists")
        ),
        sa.ForeignKeyConstraint(["genre_id"], ["genres.id"], name=op.f("fk_songs_genre_id_genres")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_songs")),
    )
    with op.batch_alter_table("songs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_songs_artist_id"), ["artist_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_songs_genre_id"), ["genre_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("songs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_songs_genre_id"))
        batch_op.drop_index(batch_op.f("ix_songs_artist_id"))

    op.drop_table("songs")
    op.drop_table("genres")
    op.drop_table("artists")
