"""A scanned music folder -> the database: add new files, update changed ones, delete gone ones.

>>> report = sync_library(engine, scan, name="music")   # scan: training.audio.library
>>> report.added, report.updated, report.removed, report.unchanged

The library is one catalogue (app.catalogue.importing) whose songs are keyed by
their file's path below the root. Only new and changed files (a different
content fingerprint) are written, so a re-run over an unchanged folder writes
nothing and persisted embeddings stay valid; songs whose files are gone are
deleted through the same path as DELETE /songs/{id}.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.catalogue.importing import CatalogueSource, artist_key, import_catalogue
from app.catalogue.recordings import duplicate_pairs, recording_key
from app.catalogue.writes import delete_songs
from app.orm import LIBRARY, Artist, Song, blobs_to_features
from app.orm import Catalogue as CatalogueRow
from training.audio.library import LibraryScan, LibraryTrack
from training.data.fma import TOP_GENRES, Catalogue


@dataclass
class SyncReport:
    catalogue: str
    added: list[str] = field(default_factory=list)  # file paths, relative to the root
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0


def sync_library(engine: Engine, scan: LibraryScan, *, name: str | None = None) -> SyncReport:
    """Make the catalogue `name` (default: the root folder's name) hold exactly scan.tracks."""
    root = str(scan.root)
    source = CatalogueSource(name=name or scan.root.name, kind=LIBRARY, origin=root, root=root)
    stored = _stored_fingerprints(engine, source.name)
    report = SyncReport(source.name)
    by_file = {track.file: track for track in scan.tracks}
    changed = []
    for track in scan.tracks:
        if track.file not in stored:
            report.added.append(track.file)
            changed.append(track)
        elif stored[track.file][1] != track.fingerprint:
            report.updated.append(track.file)
            changed.append(track)
        else:
            report.unchanged += 1
    # Write even when nothing changed the first time: the catalogue row itself is news.
    if changed or not stored:
        import_catalogue(engine, library_catalogue(changed), source=source)
    gone = {f: song_id for f, (song_id, _) in stored.items() if f not in by_file}
    if gone:
        with Session(engine) as session:
            delete_songs(session, sorted(gone.values()))
        report.removed = sorted(gone)
    return report


def _stored_fingerprints(engine: Engine, name: str) -> dict[str, tuple[int, str | None]]:
    query = (
        select(Song.source_key, Song.id, Song.fingerprint)
        .join(CatalogueRow, Song.catalogue_id == CatalogueRow.id)
        .where(CatalogueRow.name == name)
    )
    with engine.connect() as connection:
        return {str(key): (int(i), fp) for key, i, fp in connection.execute(query)}


def library_catalogue(tracks: list[LibraryTrack]) -> Catalogue:
    """The tracks in the in-memory form the importer reads (as if from tracks.csv)."""
    index = pd.Index(np.arange(1, len(tracks) + 1), name="track_id")
    keys = [artist_key(name=t.artist, file=t.file) for t in tracks]
    artist_codes = {key: n + 1 for n, key in enumerate(dict.fromkeys(keys))}
    table = pd.DataFrame(
        {
            "artist_id": [artist_codes[key] for key in keys],
            "artist_name": [t.artist for t in tracks],
            "title": [t.title for t in tracks],
            "genre": [t.genre for t in tracks],
            "location": [None] * len(tracks),
            "latitude": np.full(len(tracks), np.nan),
            "longitude": np.full(len(tracks), np.nan),
            "duration": [t.duration for t in tracks],
            "album": [t.album for t in tracks],
            "album_artist": [t.album_artist for t in tracks],
            "track_number": [np.nan if t.track_number is None else t.track_number for t in tracks],
            "file": [t.file for t in tracks],
            "fingerprint": [t.fingerprint for t in tracks],
        },
        index=index,
    )
    genres = pd.DataFrame(
        {
            "#tracks": [0] * len(TOP_GENRES),
            "parent": [0] * len(TOP_GENRES),
            "title": [title for _, title, _ in TOP_GENRES],
            "top_level": [gid for gid, _, _ in TOP_GENRES],
        },
        index=pd.Index([gid for gid, _, _ in TOP_GENRES], name="genre_id"),
    )
    features = (
        np.stack([t.features for t in tracks]).astype(np.float32)
        if tracks
        else np.empty((0, 518), np.float32)
    )
    return Catalogue(features, table, genres, n_dropped=0, n_unmatched=0, fingerprint="")


@dataclass(frozen=True)
class LibrarySongs:
    """One library's songs as the model maker needs them, in id order."""

    ids: np.ndarray  # int64
    features: np.ndarray  # (n, 518) float32
    artist_ids: np.ndarray  # int64
    labelled: np.ndarray  # bool: the artist comes from a tag or file name, not made up
    titles: list[str | None]
    artist_names: list[str]


def read_library_songs(session: Session, *, name: str) -> LibrarySongs:
    query = (
        select(Song.id, Song.features, Song.artist_id, Artist.source_key, Song.title, Artist.name)
        .join(Artist, Song.artist_id == Artist.id)
        .join(CatalogueRow, Song.catalogue_id == CatalogueRow.id)
        .where(CatalogueRow.name == name)
        .order_by(Song.id)
    )
    rows = session.execute(query).all()
    return LibrarySongs(
        ids=np.asarray([r[0] for r in rows], dtype=np.int64),
        features=blobs_to_features([r[1] for r in rows]),
        artist_ids=np.asarray([r[2] for r in rows], dtype=np.int64),
        labelled=np.asarray([str(r[3] or "").startswith("name:") for r in rows], dtype=bool),
        titles=[r[4] for r in rows],
        artist_names=[r[5] for r in rows],
    )


def near_duplicates(songs: LibrarySongs) -> list[tuple[int, int]]:
    """Pairs of song ids that are copies of one recording (app.catalogue.recordings' rule),
    their features compared z-scored. A song whose artist nobody named matches by its
    features only: the made-up "unknown artist" is no shared name."""
    if len(songs.ids) < 2:
        return []
    from training.data.split import ZScore

    keys = [
        recording_key(title=title, artist=artist) if labelled else None
        for title, artist, labelled in zip(
            songs.titles, songs.artist_names, songs.labelled, strict=True
        )
    ]
    vectors = ZScore.fit(songs.features).apply(songs.features)
    return duplicate_pairs(ids=songs.ids, keys=keys, vectors=vectors)
