"""Reading the catalogue: rows for the index, songs for answers, features for evaluation.

>>> rows, features = read_index_rows(session)
>>> songs = read_songs(session, [2, 5])
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from app.catalogue import CatalogueError
from app.catalogue.recordings import recording_key
from app.catalogue.rows import SongRows
from app.orm import Artist, CatalogueState, Genre, Song, blobs_to_features

# Ids per IN list of a look-up: below SQLite's bound-parameter limit.
_LOOKUP_CHUNK = 2000


def read_index_rows(
    session: Session, *, ids: np.ndarray | None = None
) -> tuple[SongRows, np.ndarray]:
    """Filter attributes and (n, 518) features of all songs, or of those ids, in id order."""
    query = (
        select(
            Song.id, Song.artist_id, Genre.title, Artist.latitude, Artist.longitude, Song.features
        )
        .join(Artist, Song.artist_id == Artist.id)
        .outerjoin(Genre, Song.genre_id == Genre.id)
        .order_by(Song.id)
    )
    if ids is not None:
        query = query.where(Song.id.in_([int(i) for i in ids]))
    result = session.execute(query).all()
    columns: list = list(zip(*result, strict=True)) if result else [[] for _ in range(6)]
    rows = SongRows.from_columns(*columns[:5])
    return rows, blobs_to_features(list(columns[5]))


def read_labelled_features(session: Session, *, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(artist_ids (n,), features (n, 518)) of the songs from one source, in id order."""
    query = select(Song.artist_id, Song.features).where(Song.source == source).order_by(Song.id)
    result = session.execute(query).all()
    artists = np.asarray([r[0] for r in result], dtype=np.int64)
    return artists, blobs_to_features([r[1] for r in result])


def read_songs(session: Session, ids: list[int]) -> dict[int, Song]:
    """Songs by id (with artist and genre loaded); missing ids are absent."""
    if not ids:
        return {}
    songs = session.scalars(select(Song).where(Song.id.in_(ids))).unique().all()
    return {song.id: song for song in songs}


def top_level_genres(session: Session) -> dict[str, int]:
    """Top-level genre title -> id."""
    query = select(Genre.title, Genre.id).where(Genre.id == Genre.top_level_id)
    return {title: gid for title, gid in session.execute(query).all()}


def search_songs(
    session: Session, *, contains: str | None, limit: int, offset: int
) -> tuple[int, list[Song]]:
    """(how many match, one page of them): title or artist name holds `contains`, any case.

    Ordered by id, so pages are stable. LIKE's wildcards in `contains` match literally.
    SQLite folds the case of ASCII letters only; PostgreSQL's ILIKE folds all.
    """
    where = []
    if contains:
        pattern = "%" + _escape_like(contains) + "%"
        where.append(
            or_(Song.title.ilike(pattern, escape="\\"), Artist.name.ilike(pattern, escape="\\"))
        )
    matching = select(Song.id).join(Artist, Song.artist_id == Artist.id).where(*where)
    total = session.scalar(select(func.count()).select_from(matching.subquery()))
    page_ids = session.scalars(matching.order_by(Song.id).limit(limit).offset(offset)).all()
    songs = read_songs(session, list(page_ids))
    return int(total or 0), [songs[i] for i in page_ids]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def read_song_ids(session: Session) -> np.ndarray:
    """Every stored song id, ascending."""
    return np.asarray(session.scalars(select(Song.id).order_by(Song.id)).all(), dtype=np.int64)


def read_features_of(session: Session, ids: np.ndarray) -> np.ndarray:
    """(len(ids), 518) features of these songs, in the order given; every id must exist."""
    blobs: dict[int, bytes] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):  # bounded IN lists
        chunk = [int(i) for i in ids[start : start + _LOOKUP_CHUNK]]
        query = select(Song.id, Song.features).where(Song.id.in_(chunk))
        blobs.update((song_id, blob) for song_id, blob in session.execute(query))
    if len(blobs) < len(set(ids.tolist())):
        raise CatalogueError("songs were deleted while the catalogue was being read: restart")
    return blobs_to_features([blobs[int(i)] for i in ids])


def read_song_labels(session: Session, ids: np.ndarray) -> list[tuple[str | None, str, str | None]]:
    """(title, artist name, genre title) of these songs, in the order given."""
    labels: dict[int, tuple[str | None, str, str | None]] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = [int(i) for i in ids[start : start + _LOOKUP_CHUNK]]
        query = (
            select(Song.id, Song.title, Artist.name, Genre.title)
            .join(Artist, Song.artist_id == Artist.id)
            .outerjoin(Genre, Song.genre_id == Genre.id)
            .where(Song.id.in_(chunk))
        )
        labels.update((row[0], (row[1], row[2], row[3])) for row in session.execute(query))
    return [labels[int(i)] for i in ids]


def read_recording_keys(session: Session, ids: list[int]) -> dict[int, str | None]:
    """Song id -> its recording key (app.catalogue.recordings); missing ids are absent."""
    keys: dict[int, str | None] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = [int(i) for i in ids[start : start + _LOOKUP_CHUNK]]
        query = (
            select(Song.id, Song.title, Artist.name)
            .join(Artist, Song.artist_id == Artist.id)
            .where(Song.id.in_(chunk))
        )
        keys.update(
            (song_id, recording_key(title=title, artist=artist))
            for song_id, title, artist in session.execute(query)
        )
    return keys


def catalogue_version(session: Session) -> str:
    """A token that changes with any change to songs' features (migration 0002's triggers).

    SQLite's triggers replace the stored token; PostgreSQL's advance a sequence
    (writers never wait on each other), read next to the database's random identity.
    """
    token = session.execute(select(CatalogueState.version)).scalar_one()
    if session.get_bind().dialect.name != "postgresql":
        return token
    changes = session.execute(text("SELECT last_value, is_called FROM catalogue_version_seq"))
    last_value, is_called = changes.one()
    return f"{token}:{last_value if is_called else 0}"


def read_song_rows(session: Session) -> SongRows:
    """Filter attributes of every song, in id order, without the (large) features."""
    query = (
        select(Song.id, Song.artist_id, Genre.title, Artist.latitude, Artist.longitude)
        .join(Artist, Song.artist_id == Artist.id)
        .outerjoin(Genre, Song.genre_id == Genre.id)
        .order_by(Song.id)
    )
    columns: list = list(zip(*session.execute(query).all(), strict=True)) or [[] for _ in range(5)]
    return SongRows.from_columns(*columns)


def read_track_rows(
    session: Session, ids: list[int]
) -> list[tuple[int, int, str | None, float | None, str | None, str]]:
    """(id, artist id, album, duration, title, artist name) of these songs, without the
    features or ORM objects: what playlist rules need, for thousands of songs at once."""
    rows: list = []
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = [int(i) for i in ids[start : start + _LOOKUP_CHUNK]]
        query = (
            select(Song.id, Song.artist_id, Song.album, Song.duration, Song.title, Artist.name)
            .join(Artist, Song.artist_id == Artist.id)
            .where(Song.id.in_(chunk))
        )
        rows.extend(tuple(row) for row in session.execute(query))
    return rows
