"""ORM tables. Alembic owns the schema (migrations/); this module only describes it.

Features are stored as one little-endian float32 blob of 518 values per song:
a row of 518 columns would be unwieldy, and the blob round-trips exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, get_args

import numpy as np
from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from training.data.features import N_FEATURES

FEATURE_DTYPE = np.dtype("<f4")
# Where a song came from: an imported FMA-format catalogue, a music library (files
# analysed by `musicsim extract`/`musicsim library`), or added at run time (cold start).
Source = Literal["fma", "library", "cold-start"]
FMA: Source = "fma"
LIBRARY: Source = "library"
COLD_START: Source = "cold-start"
SOURCES: tuple[str, ...] = get_args(Source)

# Named constraints let Alembic's batch mode (SQLite) alter them later.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Catalogue(Base):
    """One imported catalogue: its rows are the only ones its imports may change (0004).

    origin: the folder it was read from (an FMA-format folder, or a library's root);
    root: for a library, the folder its songs' file paths are relative to.
    """

    __tablename__ = "catalogues"
    __table_args__ = (CheckConstraint("kind IN ('fma', 'library')", name="kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    origin: Mapped[str | None] = mapped_column(String(4096))
    root: Mapped[str | None] = mapped_column(String(4096))


class Artist(Base):
    __tablename__ = "artists"
    __table_args__ = (
        Index("ux_artists_catalogue_source_key", "catalogue_id", "source_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The artist's identity in the catalogue it came from (None: created at run time).
    catalogue_id: Mapped[int | None] = mapped_column(ForeignKey("catalogues.id"))
    source_key: Mapped[str | None] = mapped_column(String(1024))
    name: Mapped[str] = mapped_column(String(512))
    location: Mapped[str | None] = mapped_column(String(512))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)


class Genre(Base):
    __tablename__ = "genres"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(256))
    parent_id: Mapped[int | None] = mapped_column(Integer)
    top_level_id: Mapped[int] = mapped_column(Integer)


class Song(Base):
    __tablename__ = "songs"
    __table_args__ = (
        CheckConstraint("source IN ('fma', 'library', 'cold-start')", name="source"),
        CheckConstraint(f"length(features) = {N_FEATURES * 4}", name="features_length"),
        Index("ux_songs_catalogue_source_key", "catalogue_id", "source_key", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The song's identity in its catalogue (FMA: track id; library: relative file path).
    catalogue_id: Mapped[int | None] = mapped_column(ForeignKey("catalogues.id"), index=True)
    source_key: Mapped[str | None] = mapped_column(String(1024))
    # A library song's file, relative to its catalogue's root, and its content's SHA-256.
    file_path: Mapped[str | None] = mapped_column(String(4096))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str | None] = mapped_column(String(1024))
    artist_id: Mapped[int] = mapped_column(ForeignKey("artists.id"), index=True)
    genre_id: Mapped[int | None] = mapped_column(ForeignKey("genres.id"), index=True)
    duration: Mapped[float | None] = mapped_column(Float)
    album: Mapped[str | None] = mapped_column(String(1024))
    album_artist: Mapped[str | None] = mapped_column(String(1024))
    track_number: Mapped[int | None] = mapped_column(Integer)
    # Changes made to this row in place (PATCH, a re-import with other values): other
    # processes re-read a song whose revision moved since they indexed it (0005).
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0", index=True)
    features: Mapped[bytes] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(UTC)
    )

    artist: Mapped[Artist] = relationship(lazy="joined")
    genre: Mapped[Genre | None] = relationship(lazy="joined")
    catalogue: Mapped[Catalogue | None] = relationship(lazy="joined")


class CatalogueState(Base):
    """One row whose `version` database triggers replace on any change to songs' features.

    Persisted embeddings record the version they were computed at (migration 0002).
    """

    __tablename__ = "catalogue_state"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64))


def features_to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=FEATURE_DTYPE).tobytes()


def blobs_to_features(blobs: list[bytes]) -> np.ndarray:
    """(n, 518) float32 from stored blobs, in one buffer."""
    if not blobs:
        return np.empty((0, N_FEATURES), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype=FEATURE_DTYPE).reshape(len(blobs), N_FEATURES)
