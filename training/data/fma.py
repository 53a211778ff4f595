"""Reading the Free Music Archive metadata files: tracks.csv, features.csv, genres.csv.

The layout is FMA's own (multi-row headers, see docs/fma-format.md); a file in
another layout stops with an `FMAFormatError` that names the file and the
problem. The parsed features are cached as a binary copy keyed by the file's
size, mtime and SHA-256, so the second load of the 1 GB real file skips the CSV.

    >>> from training.data.fma import load_catalogue
    >>> cat = load_catalogue(data_dir=Path("data/demo"))
    >>> cat.features.shape, cat.n_dropped
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.data import FEATURES_FILE, GENRES_FILE, TRACKS_FILE
from training.data.features import FEATURE_COLUMNS, HEADER_NAMES, INDEX_NAME, N_FEATURES


# (group, field) in tracks.csv -> the name the catalogue keeps it under.
REQUIRED_TRACK_COLUMNS = {
    ("artist", "id"): "artist_id",
    ("artist", "name"): "artist_name",
    ("track", "title"): "title",
    ("track", "genre_top"): "genre",
}
OPTIONAL_TRACK_COLUMNS = {
    ("artist", "location"): "location",
    ("artist", "latitude"): "latitude",
    ("artist", "longitude"): "longitude",
    ("track", "duration"): "duration",
    ("album", "title"): "album",
}
GENRE_COLUMNS = ("genre_id", "#tracks", "parent", "title", "top_level")
# FMA's 16 top-level genres: (genre_id, title, tracks with that genre_top in the full release).
TOP_GENRES: tuple[tuple[int, str, int], ...] = (
    (3, "Blues", 110),
    (5, "Classical", 1230),
    (9, "Country", 194),
    (13, "Easy Listening", 24),
    (15, "Electronic", 9372),
    (38, "Experimental", 10608),
    (17, "Folk", 2803),
    (21, "Hip-Hop", 3552),
    (1235, "Instrumental", 2079),
    (2, "International", 1389),
    (4, "Jazz", 571),
    (8, "Old-Time / Historic", 554),
    (10, "Pop", 2332),
    (12, "Rock", 14182),
    (14, "Soul-RnB", 175),
    (20, "Spoken", 423),
)
CACHE_FORMAT = 1


class FMAFormatError(ValueError):
    """A metadata file is missing or not in FMA's layout; the message names the file."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path


@dataclass(frozen=True)
class Catalogue:
    """Tracks that have both metadata and finite features, in track-id order.

    features: (n_tracks, 518) float32 in FEATURE_COLUMNS order.
    tracks: indexed by track_id, columns artist_id, artist_name, title, genre
        (top-level genre title, or None), location, latitude, longitude, duration, album.
    """

    features: np.ndarray
    tracks: pd.DataFrame
    genres: pd.DataFrame
    n_dropped: int  # tracks whose features were missing or not finite
    n_unmatched: int  # tracks in features.csv that tracks.csv does not describe
    fingerprint: str  # SHA-256 over the three files' hashes

    @property
    def track_ids(self) -> np.ndarray:
        return self.tracks.index.to_numpy(dtype=np.int64)

    @property
    def artist_ids(self) -> np.ndarray:
        return self.tracks["artist_id"].to_numpy(dtype=np.int64)


def load_catalogue(*, data_dir: Path, cache_dir: Path | None = None) -> Catalogue:
    """Read and join an FMA-format folder by track_id."""
    data_dir = Path(data_dir)
    paths = [data_dir / name for name in (TRACKS_FILE, FEATURES_FILE, GENRES_FILE)]
    for path in paths:
        if not path.is_file():
            raise FMAFormatError(path, "file not found")
    tracks_path, features_path, genres_path = paths
    hashes = {path.name: remembered_sha256(path, cache_dir) for path in paths}
    track_ids, features = load_features(
        path=features_path, sha256=hashes[FEATURES_FILE], cache_dir=cache_dir
    )
    tracks = read_tracks(tracks_path)
    genres = read_genres(genres_path)
    return _join(track_ids, features, tracks, genres, _fingerprint(hashes))


def _join(
    track_ids: np.ndarray,
    features: np.ndarray,
    tracks: pd.DataFrame,
    genres: pd.DataFrame,
    fingerprint: str,
) -> Catalogue:
    finite = np.isfinite(features).all(axis=1)
    described = np.isin(track_ids, tracks.index.to_numpy())
    keep = finite & described
    order = np.argsort(track_ids[keep], kind="stable")
    kept_ids = track_ids[keep][order]
    return Catalogue(
        features=np.ascontiguousarray(features[keep][order]),
        tracks=tracks.loc[kept_ids],
        genres=genres,
        n_dropped=int((~finite).sum()),
        n_unmatched=int((finite & ~described).sum()),
        fingerprint=fingerprint,
    )


def _fingerprint(hashes: dict[str, str]) -> str:
    text = json.dumps(hashes, sort_keys=True).encode()
    return hashlib.sha256(text).hexdigest()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def remembered_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """The file's SHA-256, recomputed only when its size or modification time changed.

    Hashing FMA's 951 MB features.csv costs seconds, more than loading the parsed
    cache; like git's index and make, a file whose size and mtime (to the
    nanosecond) are unchanged is taken to be unchanged.
    """
    stat = path.stat()
    memo_path = _cache_path(path, cache_dir, "sha256").with_suffix(".json")
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        memo = json.loads(memo_path.read_text())
        if {k: memo.get(k) for k in stamp} == stamp and len(memo.get("sha256", "")) == 64:
            return memo["sha256"]
    except (OSError, ValueError, AttributeError):
        pass  # absent or unreadable: hash the file
    sha256 = file_sha256(path)
    try:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        memo_path.write_text(json.dumps({**stamp, "sha256": sha256}))
    except OSError:
        pass  # a read-only data folder just means hashing every time
    return sha256


# --- header validation -----------------------------------------------------------


def _read_header_rows(path: Path, n_rows: int) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            rows = [row for _, row in zip(range(n_rows), reader, strict=False)]
    except UnicodeDecodeError as exc:
        raise FMAFormatError(path, f"not UTF-8 text ({exc})") from exc
    if len(rows) < n_rows:
        raise FMAFormatError(path, f"expected at least {n_rows} header rows, found {len(rows)}")
    return rows


def _check_index_row(path: Path, row: list[str], line: int) -> None:
    if not row or row[0] != INDEX_NAME or any(cell for cell in row[1:]):
        raise FMAFormatError(
            path,
            f"line {line} should be the '{INDEX_NAME}' row that ends FMA's header "
            f"(found {row[:3]}...); is the number of header rows right?",
        )


def _feature_columns_from_header(path: Path) -> list[tuple[str, str, str]]:
    rows = _read_header_rows(path, 4)
    for line, (row, name) in enumerate(zip(rows[:3], HEADER_NAMES, strict=True), start=1):
        if not row or row[0] != name:
            raise FMAFormatError(
                path, f"line {line} should start with '{name}' (FMA's header), found {row[:1]}"
            )
    _check_index_row(path, rows[3], 4)
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise FMAFormatError(path, "header rows have different numbers of cells")
    return list(zip(rows[0][1:], rows[1][1:], rows[2][1:], strict=True))


def _check_feature_columns(path: Path, columns: list[tuple[str, str, str]]) -> None:
    found, expected = set(columns), set(FEATURE_COLUMNS)
    if len(columns) != len(found):
        raise FMAFormatError(path, "some feature columns appear twice")
    if found != expected:
        missing = sorted(expected - found)[:3]
        extra = sorted(found - expected)[:3]
        raise FMAFormatError(
            path,
            f"feature columns are not FMA's {N_FEATURES}: found {len(columns)}, "
            f"{len(expected - found)} missing (e.g. {missing}), "
            f"{len(found - expected)} unexpected (e.g. {extra})",
        )


# --- features.csv ----------------------------------------------------------------


def load_features(
    *, path: Path, sha256: str | None = None, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(track_ids int64 (n,), features float32 (n, 518)) from features.csv, cached."""
    path = Path(path)
    sha256 = sha256 or remembered_sha256(path, cache_dir)
    stat = path.stat()
    cache = _cache_path(path, cache_dir, f"{stat.st_size}-{stat.st_mtime_ns}-{sha256[:32]}")
    cached = _read_cache(cache)
    if cached is not None:
        return cached
    track_ids, features = parse_features_csv(path)
    _write_cache(cache, track_ids, features)
    return track_ids, features


def parse_features_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse features.csv (no cache), in FEATURE_COLUMNS order."""
    columns = _feature_columns_from_header(path)
    _check_feature_columns(path, columns)
    try:
        # The header is checked above; parsing the body alone with a fixed dtype
        # is several times faster than letting pandas build a 3-level header.
        body = pd.read_csv(path, header=None, skiprows=4, index_col=0, dtype=np.float32, engine="c")
    except ValueError as exc:
        raise FMAFormatError(path, f"a feature value is not a number ({exc})") from exc
    if body.shape[1] != len(columns):
        raise FMAFormatError(path, f"rows have {body.shape[1]} values, header has {len(columns)}")
    track_ids = _integer_ids(path, body.index)
    position = {column: i for i, column in enumerate(columns)}
    order = [position[column] for column in FEATURE_COLUMNS]
    features = np.ascontiguousarray(body.to_numpy(dtype=np.float32)[:, order])
    return track_ids, features


def _integer_ids(path: Path, index: pd.Index) -> np.ndarray:
    ids = pd.to_numeric(pd.Series(index), errors="coerce")
    if ids.isna().any() or (ids % 1 != 0).any():
        raise FMAFormatError(path, "track_id column holds a value that is not an integer")
    if ids.duplicated().any():
        raise FMAFormatError(path, f"track_id {int(ids[ids.duplicated()].iloc[0])} repeats")
    return ids.to_numpy(dtype=np.int64)


def _cache_path(path: Path, cache_dir: Path | None, key: str) -> Path:
    folder = Path(cache_dir) if cache_dir else path.parent / ".musicsim-cache"
    return folder / f"{path.stem}-v{CACHE_FORMAT}-{key}.npz"


def _read_cache(cache: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(cache, allow_pickle=False) as npz:
            return npz["track_ids"], npz["features"]
    except (OSError, KeyError, ValueError):
        return None  # absent or unreadable: parse the CSV again


def _write_cache(cache: Path, track_ids: np.ndarray, features: np.ndarray) -> None:
    """Write atomically; a read-only data folder just means no cache."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, track_ids=track_ids, features=features)
        os.replace(tmp, cache)
    except OSError:
        return


# --- tracks.csv and genres.csv ------------------------------------------------------


def read_tracks(path: Path) -> pd.DataFrame:
    """The columns musicsim uses from tracks.csv, renamed, indexed by track_id."""
    rows = _read_header_rows(path, 3)
    _check_index_row(path, rows[2], 3)
    header = list(zip(rows[0][1:], rows[1][1:], strict=False))
    missing = [f"{g}.{f}" for (g, f) in REQUIRED_TRACK_COLUMNS if (g, f) not in header]
    if missing:
        raise FMAFormatError(path, f"missing column(s) {', '.join(missing)}")
    wanted = {**REQUIRED_TRACK_COLUMNS, **OPTIONAL_TRACK_COLUMNS}
    positions = {header.index(col) + 1: name for col, name in wanted.items() if col in header}
    try:
        table = pd.read_csv(
            path, header=None, skiprows=3, usecols=[0, *positions], index_col=0, dtype=str
        )
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
        raise FMAFormatError(path, f"unreadable rows ({exc})") from exc
    table = table.rename(columns=positions)
    table.index = pd.Index(_integer_ids(path, table.index), name=INDEX_NAME)
    return _typed_tracks(path, table)


def _typed_tracks(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=table.index)
    artist = pd.to_numeric(table["artist_id"], errors="coerce")
    if artist.isna().any() or (artist % 1 != 0).any():
        raise FMAFormatError(path, "artist.id holds a missing or non-integer value")
    out["artist_id"] = artist.astype(np.int64)
    for name in ("artist_name", "title", "genre", "location", "album"):
        column = table[name] if name in table else pd.Series(None, index=table.index)
        out[name] = column.astype(object).where(column.notna(), None)
    for name in ("latitude", "longitude", "duration"):
        column = table[name] if name in table else pd.Series(np.nan, index=table.index)
        out[name] = pd.to_numeric(column, errors="coerce").astype(np.float64)
    return out


def read_genres(path: Path) -> pd.DataFrame:
    """genres.csv indexed by genre_id, with #tracks, parent, title, top_level."""
    try:
        table = pd.read_csv(path)
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' parser errors are ValueErrors
        raise FMAFormatError(path, f"unreadable ({exc})") from exc
    missing = [c for c in GENRE_COLUMNS if c not in table.columns]
    if missing:
        raise FMAFormatError(path, f"missing column(s) {', '.join(missing)}")
    for column in ("genre_id", "parent", "top_level"):
        if len(table) and not pd.api.types.is_integer_dtype(table[column]):
            raise FMAFormatError(path, f"column {column} holds a non-integer value")
    table = table.astype({"genre_id": np.int64, "parent": np.int64, "top_level": np.int64})
    return table.set_index("genre_id")[list(GENRE_COLUMNS[1:])]


def top_level_genre_ids(genres: pd.DataFrame) -> dict[str, int]:
    """Title -> id of the top-level genres: those that are their own top_level."""
    top = genres[genres.index == genres["top_level"]]
    return {str(title): int(gid) for gid, title in top["title"].items()}
