"""The song catalogue in the database: FMA import, start-up loading, look-ups and additions.

>>> import_catalogue(engine, load_catalogue(data_dir=Path("data/demo")))
>>> rows, features = read_index_rows(session)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.index import SongIndex, SongRows
from app.orm import Artist, Genre, Song, blobs_to_features, features_to_blob
from training.fma import Catalogue, top_level_genre_ids

# Rows per INSERT statement during import: large enough to amortise round trips,
# small enough to stay below SQLite's bound-parameter limit.
_IMPORT_CHUNK = 2000
# Ids per look-up of songs the follower has not indexed yet (same limit).
_LOOKUP_CHUNK = 2000
# The follower counts songs per block of this many consecutive ids, and reads the ids
# of a block only when its count differs from the index's.
_ID_BLOCK = 4096
ProgressCallback = Callable[[int], None]


# --- import -----------------------------------------------------------------------------


def import_catalogue(
    engine: Engine, catalogue: Catalogue, *, on_rows: ProgressCallback | None = None
) -> int:
    """Upsert genres, artists and songs by id: importing twice leaves the same rows.

    Refuses (CatalogueError) when a track id is taken by a cold-start song, which
    an upsert would silently overwrite.
    """
    genre_ids = top_level_genre_ids(catalogue.genres)
    with engine.begin() as connection:
        _refuse_cold_start_collisions(connection, catalogue.track_ids)
        _upsert(connection, Genre, _genre_records(catalogue.genres), on_rows=None)
        _upsert(connection, Artist, _artist_records(catalogue.tracks), on_rows=None)
        _upsert(connection, Song, _song_records(catalogue, genre_ids), on_rows=on_rows)
        _advance_id_sequences(connection)
    return len(catalogue.tracks)


def _refuse_cold_start_collisions(connection, track_ids: np.ndarray) -> None:
    query = select(Song.id).where(Song.source == "cold-start")
    taken = np.intersect1d(np.asarray(connection.scalars(query).all(), dtype=np.int64), track_ids)
    if len(taken):
        raise CatalogueError(
            f"{len(taken)} track ids of this catalogue belong to cold-start songs already "
            f"stored (e.g. {taken[:5].tolist()}); import it into another database"
        )


def _genre_records(genres: pd.DataFrame) -> Iterator[dict]:
    for gid, row in genres.iterrows():
        parent = int(row["parent"])
        yield {
            "id": int(gid),
            "title": str(row["title"]),
            "parent_id": parent or None,  # FMA writes 0 for "no parent"
            "top_level_id": int(row["top_level"]),
        }


def _artist_records(tracks: pd.DataFrame) -> Iterator[dict]:
    artists = tracks.drop_duplicates("artist_id")
    for row in artists.itertuples(index=False):
        yield {
            "id": int(row.artist_id),
            "name": _text(row.artist_name) or f"artist {row.artist_id}",
            "location": _text(row.location),
            "latitude": _number(row.latitude),
            "longitude": _number(row.longitude),
        }


def _song_records(catalogue: Catalogue, genre_ids: dict[str, int]) -> Iterator[dict]:
    for i, row in enumerate(catalogue.tracks.itertuples()):
        yield {
            "id": int(row.Index),
            "title": _text(row.title),
            "artist_id": int(row.artist_id),
            "genre_id": genre_ids.get(_text(row.genre) or ""),
            "duration": _number(row.duration),
            "features": features_to_blob(catalogue.features[i]),
            "source": "fma",
        }


def _text(value) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _number(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _upsert(connection, table, records: Iterator[dict], *, on_rows) -> None:
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    chunk: list[dict] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == _IMPORT_CHUNK:
            _upsert_chunk(connection, table, insert, chunk, on_rows)
            chunk = []
    if chunk:
        _upsert_chunk(connection, table, insert, chunk, on_rows)


def _upsert_chunk(connection, table, insert, chunk, on_rows) -> None:
    statement = insert(table).values(chunk)
    updates = {c: statement.excluded[c] for c in chunk[0] if c != "id"}
    connection.execute(statement.on_conflict_do_update(index_elements=["id"], set_=updates))
    if on_rows is not None:
        on_rows(len(chunk))


def _advance_id_sequences(connection) -> None:
    """PostgreSQL: make new ids continue after the imported ones (SQLite does this itself)."""
    if connection.dialect.name != "postgresql":
        return
    for table in ("artists", "songs"):
        connection.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
            )
        )


# --- reading ----------------------------------------------------------------------------


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
    columns = list(zip(*result, strict=True)) if result else [[] for _ in range(6)]
    rows = SongRows(
        ids=np.asarray(columns[0], dtype=np.int64),
        artist_ids=np.asarray(columns[1], dtype=np.int64),
        genres=np.asarray(columns[2], dtype=object),
        latitudes=_floats(columns[3]),
        longitudes=_floats(columns[4]),
    )
    return rows, blobs_to_features(list(columns[5]))


def _floats(values) -> np.ndarray:
    return np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)


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


# --- adding a cold-start song -----------------------------------------------------------


class CatalogueError(ValueError):
    """A request names something the catalogue cannot accept; the message says what."""


@dataclass(frozen=True)
class NewSong:
    title: str
    artist: int | str  # an existing artist's id, or a name
    features: np.ndarray  # (518,) float32
    genre: str | None = None
    duration: float | None = None
    location: str | None = None
    latitude: float | None = None
    longitude: float | None = None


def add_song(session: Session, new: NewSong) -> Song:
    """Store a cold-start song and commit; returns it with its new id."""
    _lock_for_writing(session)
    artist = _resolve_artist(session, new)
    genre_id = None
    if new.genre is not None:
        genres = top_level_genres(session)
        if new.genre not in genres:
            raise CatalogueError(f"unknown genre {new.genre!r}; known: {sorted(genres)}")
        genre_id = genres[new.genre]
    song = Song(
        title=new.title,
        artist=artist,
        genre_id=genre_id,
        duration=new.duration,
        features=features_to_blob(new.features),
        source="cold-start",
    )
    session.add(song)
    session.commit()
    session.refresh(song)
    return song


def add_and_index(
    session: Session, index: SongIndex, embed: Callable[[np.ndarray], np.ndarray], new: NewSong
) -> int:
    """Commit a new song, then add it to the live index; returns its id.

    The commit comes first: a song is acknowledged only once it is durable, and a
    crash between the two steps is repaired by the next start-up's rebuild.
    """
    embedding = embed(new.features[None, :])
    if not np.isfinite(embedding).all():  # e.g. features so large that z-scoring overflows
        raise CatalogueError("these features cannot be embedded: their embedding is not finite")
    song = add_song(session, new)
    artist = song.artist
    rows = SongRows(
        ids=np.array([song.id], dtype=np.int64),
        artist_ids=np.array([artist.id], dtype=np.int64),
        genres=np.array([new.genre], dtype=object),
        latitudes=np.array([np.nan if artist.latitude is None else artist.latitude]),
        longitudes=np.array([np.nan if artist.longitude is None else artist.longitude]),
    )
    index.add(rows, embedding)
    return song.id


def _lock_for_writing(session: Session) -> None:
    """Hold the database's write lock from here to the commit.

    Looking an artist up by name and creating it when absent must be one step: two
    requests creating the same new artist at once would otherwise both find none and
    both insert one, and that name could never be used again ("2 artists are named").
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite" and not session.connection().connection.dbapi_connection.in_transaction:
        session.execute(text("BEGIN IMMEDIATE"))
    elif dialect == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7262)"))  # one lock for all adds


def _resolve_artist(session: Session, new: NewSong) -> Artist:
    has_location = any(v is not None for v in (new.location, new.latitude, new.longitude))
    if isinstance(new.artist, int):
        artist = session.get(Artist, new.artist)
        if artist is None:
            raise CatalogueError(f"artist {new.artist} does not exist; give a name to create one")
        if has_location:
            raise CatalogueError("a location can only be given for a new artist")
        return artist
    same_name = session.scalars(select(Artist).where(Artist.name == new.artist)).all()
    if len(same_name) > 1:
        ids = [a.id for a in same_name]
        raise CatalogueError(f"{len(ids)} artists are named {new.artist!r} ({ids}); give an id")
    if same_name:
        if has_location:
            raise CatalogueError("a location can only be given for a new artist")
        return same_name[0]
    artist = Artist(
        name=new.artist, location=new.location, latitude=new.latitude, longitude=new.longitude
    )
    session.add(artist)
    return artist


# --- start-up ---------------------------------------------------------------------------


def build_index(session: Session, embed: Callable[[np.ndarray], np.ndarray], dim: int) -> SongIndex:
    """Embed every stored song and index it by song id (one snapshot: equals the database)."""
    index = SongIndex(dim=dim)
    rows, features = read_index_rows(session)
    if len(rows):
        index.add(rows, embed(features))
    return index


def index_missing_songs(
    session: Session, index: SongIndex, embed: Callable[[np.ndarray], np.ndarray]
) -> int:
    """Index every stored song the index lacks, whatever order their ids committed in.

    Returns how many were added. Songs are never deleted and the index holds only
    committed songs, so the songs indexed before the table is read are all among
    those it holds: where the counts agree, nothing is missing. The whole table's
    count settles most polls; otherwise counts per block of ids find the blocks
    whose ids are read and compared with the index. An id watermark instead could
    skip a song whose transaction took its id early and committed late, which
    PostgreSQL's sequences allow.
    """
    indexed = index.ids()
    if session.scalar(select(func.count()).select_from(Song)) == len(indexed):
        return 0
    block = Song.id // _ID_BLOCK
    stored_per_block = session.execute(select(block, func.count()).group_by(block)).all()
    indexed_blocks, indexed_counts = np.unique(indexed // _ID_BLOCK, return_counts=True)
    indexed_per_block = dict(zip(indexed_blocks.tolist(), indexed_counts.tolist(), strict=True))
    added = 0
    for b, count in stored_per_block:
        if count == indexed_per_block.get(int(b), 0):
            continue
        low, high = int(b) * _ID_BLOCK, (int(b) + 1) * _ID_BLOCK
        stored = session.scalars(select(Song.id).where(Song.id >= low, Song.id < high)).all()
        missing = index.missing(np.asarray(stored, dtype=np.int64))
        for start in range(0, len(missing), _LOOKUP_CHUNK):
            rows, features = read_index_rows(session, ids=missing[start : start + _LOOKUP_CHUNK])
            if len(rows):
                added += index.add(rows, embed(features))
    return added
