"""The song catalogue in the database: FMA import, start-up loading, look-ups and additions.

>>> import_catalogue(engine, load_catalogue(data_dir=Path("data/demo")))
>>> rows, features = read_index_rows(session)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, or_, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.embedding_cache import CacheKey, EmbeddingCache, spot_check
from app.index import SongIndex, SongRows
from app.index_kinds import IndexSpec
from app.orm import (
    Artist,
    CatalogueState,
    Genre,
    Song,
    blobs_to_features,
    features_to_blob,
)
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
log = logging.getLogger("musicsim.catalogue")


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
    for start in range(0, len(ids), _IMPORT_CHUNK):  # bounded IN lists
        chunk = [int(i) for i in ids[start : start + _IMPORT_CHUNK]]
        query = select(Song.id, Song.features).where(Song.id.in_(chunk))
        blobs.update((song_id, blob) for song_id, blob in session.execute(query))
    if len(blobs) < len(set(ids.tolist())):
        raise CatalogueError("songs were deleted while the catalogue was being read: restart")
    return blobs_to_features([blobs[int(i)] for i in ids])


def read_song_labels(session: Session, ids: np.ndarray) -> list[tuple[str | None, str, str | None]]:
    """(title, artist name, genre title) of these songs, in the order given."""
    labels: dict[int, tuple[str | None, str, str | None]] = {}
    for start in range(0, len(ids), _IMPORT_CHUNK):
        chunk = [int(i) for i in ids[start : start + _IMPORT_CHUNK]]
        query = (
            select(Song.id, Song.title, Artist.name, Genre.title)
            .join(Artist, Song.artist_id == Artist.id)
            .outerjoin(Genre, Song.genre_id == Genre.id)
            .where(Song.id.in_(chunk))
        )
        labels.update((row[0], (row[1], row[2], row[3])) for row in session.execute(query))
    return [labels[int(i)] for i in ids]


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
    log.info("stored and indexed cold-start song %d", song.id, extra={"song_id": song.id})
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

_EMBED_CHUNK = 20_000  # songs read and embedded per step: bounded memory at any size


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
    columns = list(zip(*session.execute(query).all(), strict=True)) or [[] for _ in range(5)]
    return SongRows(
        ids=np.asarray(columns[0], dtype=np.int64),
        artist_ids=np.asarray(columns[1], dtype=np.int64),
        genres=np.asarray(columns[2], dtype=object),
        latitudes=_floats(columns[3]),
        longitudes=_floats(columns[4]),
    )


def embed_songs(
    session: Session, ids: np.ndarray, embed: Callable[[np.ndarray], np.ndarray], out: np.ndarray
) -> None:
    """Write the embeddings of the songs `ids` into `out`, a chunk at a time."""
    for start in range(0, len(ids), _EMBED_CHUNK):
        chunk = ids[start : start + _EMBED_CHUNK]
        out[start : start + len(chunk)] = embed(read_features_of(session, chunk))


def build_index(
    session: Session,
    embed: Callable[[np.ndarray], np.ndarray],
    dim: int,
    *,
    spec: IndexSpec | None = None,
    cache: EmbeddingCache | None = None,
    model_sha256: str = "",
) -> SongIndex:
    """Index every stored song, reusing persisted embeddings and index when they match."""
    spec = spec or IndexSpec()
    version = catalogue_version(session)  # first: a change after this makes the key stale
    rows = read_song_rows(session)
    if cache is None:
        embeddings = np.empty((len(rows), dim), dtype=np.float32)
        embed_songs(session, rows.ids, embed, embeddings)
        return SongIndex.from_embeddings(rows, embeddings, spec)
    key = CacheKey.of(model_sha256=model_sha256, catalogue_version=version, ids=rows.ids, dim=dim)
    embeddings = _reusable_embeddings(session, cache, key, rows.ids, embed)
    if embeddings is None:
        embeddings = cache.compute(key, lambda out: embed_songs(session, rows.ids, embed, out))
        log.info("embedded %d songs and saved them to %s", len(rows), cache.root)
    stored = cache.load_index(key, spec) if spec.approximate else None
    index = SongIndex.from_embeddings(rows, embeddings, spec, faiss_index=stored)
    if spec.approximate and stored is None:
        cache.save_index(key, spec, index.faiss_index)
    return index


def _reusable_embeddings(
    session: Session,
    cache: EmbeddingCache,
    key: CacheKey,
    ids: np.ndarray,
    embed: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray | None:
    embeddings = cache.load(key)
    if embeddings is None:
        return None
    if not spot_check(embeddings, ids, lambda some: read_features_of(session, some), embed):
        log.warning("persisted embeddings differ from the model's output: recomputing")
        cache.discard(key)
        return None
    log.info("reusing %d persisted embeddings (fingerprint %s)", len(ids), key.digest()[:12])
    return embeddings


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
