"""FMA-format catalogue files -> database rows, beside every other catalogue.

>>> import_catalogue(engine, load_catalogue(data_dir=Path("data/demo")))
>>> import_catalogue(engine, mine, source=source_of(Path("data/mylib")))   # a library

Each import belongs to a named catalogue (the `catalogues` table, migration 0004).
Songs and artists are matched by their key inside that catalogue (FMA: the track
or artist id; an extracted library: the file's path relative to its root, and the
artist's name), never by a bare database id, so an import changes only rows that
an earlier import of the same catalogue created: importing twice leaves the same
rows, and a second catalogue lands beside the first. The database allocates ids;
an FMA catalogue keeps its own track and artist ids as database ids when every
one of them is free (or already its own), so FMA's ids stay valid in the API.

Importing another folder under a name already taken is refused (CatalogueError
naming both folders) unless `replace=True`, which first removes that catalogue's
songs (and its artists no other song uses).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from app.catalogue import CatalogueError
from app.catalogue.recordings import normalised
from app.orm import FMA, LIBRARY, Artist, Genre, Song, features_to_blob
from app.orm import Catalogue as CatalogueRow
from training.data.fma import Catalogue

# Rows per INSERT statement during import: large enough to amortise round trips,
# small enough to stay below SQLite's bound-parameter limit.
IMPORT_CHUNK = 2000
# Written by `musicsim extract` beside tracks.csv: the folder the file paths are relative to.
LIBRARY_FILE = "library.json"
DEFAULT_FMA_NAME = "fma"
UNKNOWN_ARTIST = "unknown artist"
ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class CatalogueSource:
    """Which catalogue an import fills: its name, kind and where it was read from.

    origin None (imports that do not say) matches whatever folder the name last came from.
    """

    name: str = DEFAULT_FMA_NAME
    kind: str = FMA  # "fma" or "library"
    origin: str | None = None
    root: str | None = None  # a library's root folder


@dataclass(frozen=True)
class ImportReport:
    catalogue: str
    added: int  # songs new to the catalogue
    kept: int  # songs the catalogue held already (their rows updated in place)
    replaced: int  # songs removed first by replace=True


def source_of(data_dir: Path, *, name: str | None = None) -> CatalogueSource:
    """The catalogue a folder fills: a library when `musicsim extract` wrote it, else FMA."""
    data_dir = Path(data_dir).resolve()
    marker = data_dir / LIBRARY_FILE
    if marker.is_file():
        try:
            root = str(json.loads(marker.read_text(encoding="utf-8"))["root"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CatalogueError(f"{marker}: not a library description ({exc})") from exc
        return CatalogueSource(name=name or Path(root).name, kind=LIBRARY, origin=root, root=root)
    return CatalogueSource(name=name or DEFAULT_FMA_NAME, kind=FMA, origin=str(data_dir))


def import_catalogue(
    engine: Engine,
    catalogue: Catalogue,
    *,
    source: CatalogueSource | None = None,
    replace: bool = False,
    on_rows: ProgressCallback | None = None,
    chunk_rows: int = IMPORT_CHUNK,
) -> ImportReport:
    """Add or update this catalogue's genres, artists and songs, in one transaction."""
    source = source or CatalogueSource()
    with engine.begin() as connection:
        catalogue_id = _catalogue_row(connection, source)
        replaced = remove_catalogue_songs(connection, catalogue_id) if replace else 0
        songs = _song_frame(catalogue, source)
        keep_ids = source.kind == FMA and _source_ids_are_free(connection, catalogue_id, catalogue)
        _insert_missing_genres(connection, catalogue.genres)
        artist_ids = _upsert_artists(
            connection, catalogue_id, songs, catalogue, keep_ids=keep_ids, chunk_rows=chunk_rows
        )
        known = _count_songs(connection, catalogue_id)
        _upsert_songs(
            connection,
            catalogue_id,
            songs,
            catalogue,
            artist_ids,
            kind=source.kind,
            keep_ids=keep_ids,
            on_rows=on_rows,
            chunk_rows=chunk_rows,
        )
        added = _count_songs(connection, catalogue_id) - known
        _advance_id_sequences(connection)
    return ImportReport(source.name, added=added, kept=len(songs) - added, replaced=replaced)


def _catalogue_row(connection: Connection, source: CatalogueSource) -> int:
    """The catalogue's id, created when new; refuses a name that holds another folder."""
    row = connection.execute(
        select(CatalogueRow.id, CatalogueRow.kind, CatalogueRow.origin).where(
            CatalogueRow.name == source.name
        )
    ).first()
    if row is None:
        values = {"name": source.name, "kind": source.kind, "origin": source.origin}
        values["root"] = source.root
        created = connection.execute(insert(CatalogueRow).values(values)).inserted_primary_key
        assert created is not None  # an INSERT of one row
        return int(created[0])
    if row.kind != source.kind:
        raise CatalogueError(
            f"the catalogue {source.name!r} is {_kind_name(row.kind)}, this folder "
            f"{_kind_name(source.kind)}: import it under another name (--catalogue NAME)"
        )
    if row.origin is not None and source.origin is not None and row.origin != source.origin:
        raise CatalogueError(
            f"the catalogue {source.name!r} was imported from {row.origin}, not {source.origin}: "
            f"import this folder under another name (--catalogue NAME), replace that "
            f"catalogue (--replace), or use another database"
        )
    if source.origin is not None:
        connection.execute(
            update(CatalogueRow)
            .where(CatalogueRow.id == row.id)
            .values(origin=source.origin, root=source.root)
        )
    return row.id


def _kind_name(kind: str) -> str:
    return "an FMA-format catalogue" if kind == FMA else "a music library"


def remove_catalogue_songs(connection: Connection, catalogue_id: int) -> int:
    """Delete a catalogue's songs, then its artists that no remaining song uses."""
    removed = connection.execute(delete(Song).where(Song.catalogue_id == catalogue_id)).rowcount
    used = select(Song.artist_id).distinct()
    connection.execute(
        delete(Artist).where(Artist.catalogue_id == catalogue_id, Artist.id.not_in(used))
    )
    return int(removed)


def _count_songs(connection: Connection, catalogue_id: int) -> int:
    query = select(func.count()).select_from(Song).where(Song.catalogue_id == catalogue_id)
    return int(connection.scalar(query) or 0)


# --- what the catalogue's files say, keyed by source identity --------------------------


def _song_frame(catalogue: Catalogue, source: CatalogueSource) -> pd.DataFrame:
    """One row per track: its key, its artist's key and the artist's name, in file order."""
    tracks = catalogue.tracks
    if source.kind == FMA:
        keys = [str(i) for i in catalogue.track_ids]
        artist_keys = [str(a) for a in catalogue.artist_ids]
        names: list[str] = [
            _clean(n) or f"artist {a}"
            for n, a in zip(tracks["artist_name"], artist_keys, strict=True)
        ]
    else:
        if "file" not in tracks or tracks["file"].isna().any():
            raise CatalogueError("a library's tracks.csv must give every track's track.file")
        keys = [str(Path(f).as_posix()) for f in tracks["file"]]
        tagged = [_clean(n) for n in tracks["artist_name"]]
        # Untagged files get an artist each: one shared "unknown" artist would make
        # every untagged file the same artist's work to the model and to filters.
        artist_keys = [artist_key(name=n, file=key) for n, key in zip(tagged, keys, strict=True)]
        names = [n or UNKNOWN_ARTIST for n in tagged]
    if len(set(keys)) != len(keys):
        raise CatalogueError("two tracks of this catalogue have the same source identity")
    return pd.DataFrame({"key": keys, "artist_key": artist_keys, "artist_name": names})


def artist_key(*, name: str | None, file: str) -> str:
    """A library artist's identity: its normalised name, or (nameless) the file's path.

    A name of nothing but punctuation ("???") keys by its own text, never by "".
    """
    if not name:
        return "file:" + file
    return "name:" + (normalised(name) or name)


def _source_ids_are_free(connection: Connection, catalogue_id: int, catalogue: Catalogue) -> bool:
    """Whether every FMA track and artist id is unused, or used by this very row already."""
    tables: list[tuple[type[Song] | type[Artist], np.ndarray]] = [
        (Song, catalogue.track_ids),
        (Artist, np.unique(catalogue.artist_ids)),
    ]
    for table, ids in tables:
        for start in range(0, len(ids), IMPORT_CHUNK):
            chunk = [int(i) for i in ids[start : start + IMPORT_CHUNK]]
            query = select(table.id, table.catalogue_id, table.source_key).where(
                table.id.in_(chunk)
            )
            for row_id, owner, key in connection.execute(query):
                if owner != catalogue_id or key != str(row_id):
                    return False
    return True


def _insert_missing_genres(connection: Connection, genres: pd.DataFrame) -> None:
    """Genres are FMA's one taxonomy: add those absent, never change one that exists."""
    records = [
        {
            "id": int(gid),
            "title": str(row["title"]),
            "parent_id": int(row["parent"]) or None,  # FMA writes 0 for "no parent"
            "top_level_id": int(row["top_level"]),
        }
        for gid, row in genres.iterrows()
    ]
    dialect_insert = _dialect_insert(connection)
    for start in range(0, len(records), IMPORT_CHUNK):
        statement = dialect_insert(Genre).values(records[start : start + IMPORT_CHUNK])
        connection.execute(statement.on_conflict_do_nothing(index_elements=["id"]))


def _upsert_artists(
    connection: Connection,
    catalogue_id: int,
    songs: pd.DataFrame,
    catalogue: Catalogue,
    *,
    keep_ids: bool,
    chunk_rows: int,
) -> dict[str, int]:
    """Insert or update this catalogue's artists; returns artist key -> database id."""
    tracks = catalogue.tracks
    first = ~songs["artist_key"].duplicated().to_numpy()
    records = []
    for i in np.flatnonzero(first):
        row = tracks.iloc[i]
        record = {
            "catalogue_id": catalogue_id,
            "source_key": songs["artist_key"].iat[i],
            "name": songs["artist_name"].iat[i],
            "location": _clean(row["location"]),
            "latitude": _number(row["latitude"]),
            "longitude": _number(row["longitude"]),
        }
        if keep_ids:
            record["id"] = int(row["artist_id"])
        records.append(record)
    _upsert(connection, Artist, records, on_rows=None, chunk_rows=chunk_rows)
    query = select(Artist.source_key, Artist.id).where(Artist.catalogue_id == catalogue_id)
    return {str(key): int(artist_id) for key, artist_id in connection.execute(query)}


def _upsert_songs(
    connection: Connection,
    catalogue_id: int,
    songs: pd.DataFrame,
    catalogue: Catalogue,
    artist_ids: dict[str, int],
    *,
    kind: str,
    keep_ids: bool,
    on_rows: ProgressCallback | None,
    chunk_rows: int,
) -> None:
    genre_ids = _top_level_genre_ids(connection)

    def records() -> Iterator[dict]:
        for i, row in enumerate(catalogue.tracks.itertuples()):
            record = {
                "catalogue_id": catalogue_id,
                "source_key": songs["key"].iat[i],
                "title": _clean(row.title),
                "artist_id": artist_ids[songs["artist_key"].iat[i]],
                "genre_id": genre_ids.get(_clean(row.genre) or ""),
                "duration": _number(row.duration),
                "album": _clean(row.album),
                "album_artist": _clean(getattr(row, "album_artist", None)),
                "track_number": _whole(getattr(row, "track_number", None)),
                "features": features_to_blob(catalogue.features[i]),
                "source": FMA,
                "file_path": None,
                "fingerprint": None,
            }
            if kind == LIBRARY:
                record["source"] = LIBRARY
                record["file_path"] = songs["key"].iat[i]
                record["fingerprint"] = _clean(getattr(row, "fingerprint", None))
            if keep_ids:
                record["id"] = int(row.Index)
            yield record

    _upsert(connection, Song, records(), on_rows=on_rows, chunk_rows=chunk_rows)


def _top_level_genre_ids(connection: Connection) -> dict[str, int]:
    query = select(Genre.title, Genre.id).where(Genre.id == Genre.top_level_id)
    return dict(connection.execute(query).all())


def _clean(value) -> str | None:
    """Text fit for any database: None for missing, NUL and invalid characters dropped."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    cleaned = str(value).replace("\x00", "").encode("utf-8", "replace").decode("utf-8").strip()
    return cleaned or None


def _whole(value) -> int | None:
    """A track number: a positive whole number, else None."""
    number = _number(value)
    return int(number) if number is not None and number >= 1 and number == int(number) else None


def _number(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _dialect_insert(connection: Connection):
    return postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert


def _upsert(connection, table, records, *, on_rows, chunk_rows: int) -> None:
    """Insert, or update in place the row of the same (catalogue, source key)."""
    dialect_insert = _dialect_insert(connection)
    chunk: list[dict] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == chunk_rows:
            _upsert_chunk(connection, table, dialect_insert, chunk, on_rows)
            chunk = []
    if chunk:
        _upsert_chunk(connection, table, dialect_insert, chunk, on_rows)


def _upsert_chunk(connection, table, dialect_insert, chunk, on_rows) -> None:
    statement = dialect_insert(table).values(chunk)
    fixed = {"id", "catalogue_id", "source_key"}  # a row's identity never changes
    updates = {c: statement.excluded[c] for c in chunk[0] if c not in fixed}
    if table is Song:
        updates["revision"] = _next_revision_if_changed(statement, updates)
    connection.execute(
        statement.on_conflict_do_update(index_elements=["catalogue_id", "source_key"], set_=updates)
    )
    if on_rows is not None:
        on_rows(len(chunk))


def _next_revision_if_changed(statement, updates: dict):
    """A row rewritten with other values moves its revision (other processes re-read it);
    one rewritten as it was keeps it, so importing twice changes nothing."""
    changed = or_(*(getattr(Song, c).is_distinct_from(statement.excluded[c]) for c in updates))
    return case((changed, Song.revision + 1), else_=Song.revision)


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
