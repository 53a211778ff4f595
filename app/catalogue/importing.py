"""FMA-format catalogue files -> database rows: idempotent upserts by track id.

>>> import_catalogue(engine, load_catalogue(data_dir=Path("data/demo")))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select, text
from sqlalchemy.dialects import postgresql, sqlite

from app.catalogue import CatalogueError
from app.orm import COLD_START, FMA, Artist, Genre, Song, features_to_blob
from training.data.fma import Catalogue, top_level_genre_ids

# Rows per INSERT statement during import: large enough to amortise round trips,
# small enough to stay below SQLite's bound-parameter limit.
IMPORT_CHUNK = 2000
ProgressCallback = Callable[[int], None]


def import_catalogue(
    engine: Engine,
    catalogue: Catalogue,
    *,
    on_rows: ProgressCallback | None = None,
    chunk_rows: int = IMPORT_CHUNK,
) -> int:
    """Upsert genres, artists and songs by id: importing twice leaves the same rows.

    Refuses (CatalogueError) when a track id is taken by a cold-start song, which
    an upsert would silently overwrite.
    """
    genre_ids = top_level_genre_ids(catalogue.genres)
    with engine.begin() as connection:
        _refuse_cold_start_collisions(connection, catalogue.track_ids)
        _upsert(
            connection, Genre, _genre_records(catalogue.genres), on_rows=None, chunk_rows=chunk_rows
        )
        _upsert(
            connection,
            Artist,
            _artist_records(catalogue.tracks),
            on_rows=None,
            chunk_rows=chunk_rows,
        )
        _upsert(
            connection,
            Song,
            _song_records(catalogue, genre_ids),
            on_rows=on_rows,
            chunk_rows=chunk_rows,
        )
        _advance_id_sequences(connection)
    return len(catalogue.tracks)


def _refuse_cold_start_collisions(connection, track_ids: np.ndarray) -> None:
    query = select(Song.id).where(Song.source == COLD_START)
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
            "album": _text(row.album),
            "features": features_to_blob(catalogue.features[i]),
            "source": FMA,
        }


def _text(value) -> str | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _number(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _upsert(connection, table, records: Iterator[dict], *, on_rows, chunk_rows: int) -> None:
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    chunk: list[dict] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == chunk_rows:
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
