"""Audio files -> an FMA-format folder (features.csv, tracks.csv, genres.csv).

The batch job behind `musicsim extract PATH... --out DIR [--jobs N | --scheduler ADDRESS]`:
folders are searched recursively for audio files, each file's middle 30 s is
analysed by FMA's recipe (training.audio.recipe) on a Dask cluster, and the results are
written in FMA's layout, so every musicsim command that reads FMA's metadata
reads them too:

    >>> from training.audio.extraction import extract_catalogue
    >>> report = extract_catalogue(
    ...     paths=[Path("music/")], out_dir=Path("data/mine"), jobs=4,
    ...     excerpt_seconds=30.0, on_file=None,
    ... )
    >>> report.written, report.skipped       # files that could not be decoded: (path, reason)
    >>> load_catalogue(data_dir=Path("data/mine"))

The cluster is a local one of `jobs` worker processes (one thread each), or an
existing cluster reached at `scheduler` (tcp://host:port), whose workers must
see the files at the same paths; jobs=1 without a scheduler runs in this process.
Each file's outcome is appended to a journal under out_dir/.musicsim-extract/ as
it finishes (training.audio.journal), so a killed job keeps what it finished,
a re-run analyses only files not done yet, and a worker that dies loses only the
files it was analysing (reported as skipped; a re-run retries them).

Track ids are 1..n over the extracted files in input order (folders expanded in
sorted order); a file that cannot be decoded is skipped and reported, not fatal.
Titles and artists come from the files' tags (mutagen), else from file names of
the form "Artist - Title" or "Artist_-_Title", else the title is the file's stem
and the artist is left blank, with an artist id of its own (one shared "unknown"
artist would make all untagged files one artist's work). Existing files of the
same names in out_dir are replaced.

The folder is a music library: tracks.csv's track.file holds each file's path
relative to the library root (the folder given, or the folders' common parent),
track.fingerprint its SHA-256, and library.json names the root, so that
`musicsim import` keys songs by file and never by the track ids 1..n.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from training.audio.journal import AnalysedTrack, Outcome, ResultStore, file_key
from training.audio.recipe import AUDIO_EXTENSIONS, AudioError, features_from_file
from training.data import FEATURES_FILE, GENRES_FILE, TRACKS_FILE
from training.data.features import FEATURE_COLUMNS, HEADER_NAMES, INDEX_NAME, N_FEATURES
from training.data.fma import GENRE_COLUMNS, TOP_GENRES
from training.extras import require

# The audio extra: this module is imported only by the commands that extract.
mutagen = require("mutagen", extra="audio")
require("mutagen.id3", extra="audio")  # mutagen.id3.ID3: tags of WAV/AIFF files
sf = require("soundfile", extra="audio")

STORE_FOLDER = ".musicsim-extract"
LIBRARY_FILE = "library.json"
# File names often carry "Artist - Title"; the underscore form comes from tools
# that replace spaces (FMA's own downloads are named like that).
_NAME_SEPARATORS = (" - ", "_-_")
# (tag in mutagen's easy interface, ID3 frame for WAV/AIFF, whose tags are plain ID3)
_TAGS = {"title": "TIT2", "artist": "TPE1", "album": "TALB"}
_CONNECT_TIMEOUT = "5s"

OnFile = Callable[[Path, str | None], None]


class ClusterError(RuntimeError):
    """The Dask scheduler cannot be reached; the message names it."""


@dataclass(frozen=True)
class ExtractionReport:
    """Tracks written, files skipped with the reason, and how many came from an earlier run."""

    written: int
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    reused: int = 0


@dataclass(frozen=True)
class LostFile:
    """A file whose worker died while analysing it: reported, not stored, retried next run."""

    reason: str


def extract_catalogue(
    *,
    paths: list[Path],
    out_dir: Path,
    jobs: int = 1,
    scheduler: str | None = None,
    excerpt_seconds: float | None = 30.0,
    on_file: OnFile | None = None,
    root: Path | None = None,
) -> ExtractionReport:
    """Analyse the audio files under `paths` and write an FMA-format folder to out_dir.

    jobs: worker processes of the local cluster (1 runs in this process); scheduler:
    the address of an existing Dask cluster instead. on_file(path, reason) is called
    in this process as each file finishes (or is found done by an earlier run),
    reason None on success. When no file could be analysed, nothing is written
    (report.written == 0). Raises FileNotFoundError for a path that does not exist
    and ValueError when the paths hold no audio file, before any work starts;
    ClusterError when the scheduler cannot be reached. root: the library root that
    track.file is relative to (by default `library_root(paths)`).
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    files = find_audio_files(paths=paths)
    if not files:
        raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {paths}")
    store = ResultStore(Path(out_dir) / STORE_FOLDER)
    keys = [file_key(path, excerpt_seconds=excerpt_seconds) for path in files]
    results: dict[int, Outcome | LostFile] = {}
    todo = [i for i, key in enumerate(keys) if key not in store]
    for i in sorted(set(range(len(files))) - set(todo)):
        results[i] = store[keys[i]]
        _report(on_file, files[i], results[i])
    pending = [files[i] for i in todo]
    for n, outcome in analyse_files(
        pending, jobs=jobs, scheduler=scheduler, excerpt_seconds=excerpt_seconds
    ):
        if not isinstance(outcome, LostFile):
            store.append(keys[todo[n]], outcome)  # durable before it is reported
        results[todo[n]] = outcome
        _report(on_file, files[todo[n]], outcome)
    tracks = [r for _, r in sorted(results.items()) if isinstance(r, AnalysedTrack)]
    skipped = [
        (files[i], r.reason if isinstance(r, LostFile) else r)
        for i, r in sorted(results.items())
        if not isinstance(r, AnalysedTrack)
    ]
    if tracks:  # an empty catalogue would only replace a good one with nothing usable
        root = Path(root).resolve() if root is not None else library_root(paths)
        write_catalogue(tracks=tracks, out_dir=Path(out_dir), root=root)
    return ExtractionReport(written=len(tracks), skipped=skipped, reused=len(files) - len(todo))


def _report(on_file: OnFile | None, path: Path, outcome: Outcome | LostFile) -> None:
    if on_file is not None:
        reason = None if isinstance(outcome, AnalysedTrack) else outcome
        on_file(path, reason.reason if isinstance(reason, LostFile) else reason)


def library_root(paths: Iterable[Path]) -> Path:
    """The folder a library's file paths are relative to: the one folder given, or the
    common parent of the folders (and files' folders) given."""
    folders = [p.resolve() if p.is_dir() else p.resolve().parent for p in map(Path, paths)]
    return Path(os.path.commonpath(folders))


def file_fingerprint(path: Path) -> str:
    """SHA-256 of a file's bytes: a changed file is re-analysed, a moved one recognised."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def find_audio_files(*, paths: Iterable[Path]) -> list[Path]:
    """Files named directly, then audio files found under folders (sorted), each once.

    Inside folders, hidden files and folders (".name", such as macOS's "._song.mp3"
    resource forks) are left out; a file named directly is always taken.
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for path in map(Path, paths):
        if path.is_dir():
            candidates = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in AUDIO_EXTENSIONS
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.is_file():
            candidates = [path]
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
        for candidate in candidates:
            if candidate.resolve() not in seen:
                seen.add(candidate.resolve())
                found.append(candidate)
    return found


def analyse_files(
    files: list[Path], *, jobs: int, scheduler: str | None, excerpt_seconds: float | None
) -> Iterator[tuple[int, Outcome | LostFile]]:
    """(index into files, outcome), in completion order."""
    if not files:
        return
    if jobs == 1 and scheduler is None:
        for index, path in enumerate(files):
            yield index, _analyse(path, excerpt_seconds=excerpt_seconds)
        return
    # Imported here: dask is needed only by jobs that use a cluster.
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    with _dask_client(jobs=jobs, scheduler=scheduler) as client:
        futures = {
            client.submit(_analyse, path, excerpt_seconds=excerpt_seconds, pure=False): index
            for index, path in enumerate(files)
        }
        try:
            for future in as_completed(futures, loop=client.loop):
                index = futures.pop(future)
                try:
                    outcome: Outcome | LostFile = future.result()
                except KilledWorker as exc:
                    outcome = LostFile(f"the worker analysing it died ({exc})")
                del future  # the last reference: the cluster may now forget the result
                yield index, outcome
        except BaseException:
            # A bug in a worker (or Ctrl-C) should stop the job now, not after the queue.
            client.cancel(list(futures))
            raise


@contextmanager
def _dask_client(*, jobs: int, scheduler: str | None):
    """A client of the cluster at `scheduler`, or of a local cluster started for this job."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=_CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, ValueError) as exc:  # refused, timed out, or not an address
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
        with client:
            yield client
        return
    # One queued file per worker at a time: a worker that dies then loses only the
    # file it was analysing. No dashboard: its fixed port may be taken.
    nanny = logging.getLogger("distributed.nanny")
    level = nanny.level
    try:
        with (
            dask.config.set({"distributed.scheduler.worker-saturation": 1.0}),
            LocalCluster(
                n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            yield client
            # The work is done: a worker slow to exit on a busy machine is killed at
            # close, and distributed's warning for it ("still alive after 4.0 seconds,
            # killing") only alarms a user whose files were all analysed.
            nanny.setLevel(logging.ERROR)
    finally:
        nanny.setLevel(level)


def _analyse(path: Path, *, excerpt_seconds: float | None) -> Outcome:
    """One file's track, or why it was skipped. Runs in a worker process."""
    try:
        features = features_from_file(path, excerpt_seconds=excerpt_seconds)
        duration = sf.info(str(path)).duration
        fingerprint = file_fingerprint(path)
    except AudioError as exc:
        return exc.reason
    except (ValueError, OSError) as exc:  # too short, too low a rate, unreadable
        return str(exc)
    tags = read_tags(path)
    file_artist, file_title = names_from_file_name(path.stem)
    return AnalysedTrack(
        path=path,
        features=features,
        title=tags.get("title") or file_title,
        artist=tags.get("artist") or file_artist or "",
        album=tags.get("album"),
        duration=float(duration),
        fingerprint=fingerprint,
    )


def read_tags(path: Path) -> dict[str, str]:
    """title, artist and album from the file's tags, where present and not blank."""
    try:
        audio = mutagen.File(path, easy=True)
    except (mutagen.MutagenError, OSError, ValueError):
        return {}  # unreadable tags only mean falling back to the file name
    if audio is None or audio.tags is None:
        return {}
    tags = {}
    for key, frame in _TAGS.items():
        if isinstance(audio.tags, mutagen.id3.ID3):  # WAV/AIFF: ID3 without the easy view
            values = audio.tags[frame].text if frame in audio.tags else []
        else:
            values = audio.tags.get(key) or []
        text = str(values[0]).replace("\x00", "").strip() if values else ""
        if text:
            tags[key] = text
    return tags


def names_from_file_name(stem: str) -> tuple[str | None, str]:
    """(artist or None, title) from a file name without extension.

    "Artist - Title" and "Artist_-_Title" split at the first separator, with
    underscores read as spaces; any other name is the title, with no artist.
    """
    for separator in _NAME_SEPARATORS:
        artist, _, title = stem.partition(separator)
        artist, title = artist.replace("_", " ").strip(), title.replace("_", " ").strip()
        if artist and title:
            return artist, title
    return None, stem


# --- writing the FMA-format folder ----------------------------------------------------


def write_catalogue(*, tracks: list[AnalysedTrack], out_dir: Path, root: Path) -> None:
    """features.csv, tracks.csv and genres.csv in FMA's layout (track ids 1..n), and
    library.json naming the root that track.file is relative to."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = pd.Index(np.arange(1, len(tracks) + 1), name=INDEX_NAME)
    _features_table(tracks, index).to_csv(out_dir / FEATURES_FILE, float_format="%.10e")
    _tracks_table(tracks, index, root=root).to_csv(out_dir / TRACKS_FILE)
    _genres_table().to_csv(out_dir / GENRES_FILE, index=False)
    (out_dir / LIBRARY_FILE).write_text(json.dumps({"root": str(root)}) + "\n", encoding="utf-8")


def _features_table(tracks: list[AnalysedTrack], index: pd.Index) -> pd.DataFrame:
    values = (
        np.stack([t.features for t in tracks]) if tracks else np.empty((0, N_FEATURES), np.float32)
    )
    columns = pd.MultiIndex.from_tuples(FEATURE_COLUMNS, names=HEADER_NAMES)
    return pd.DataFrame(values, index=index, columns=columns)


def _tracks_table(tracks: list[AnalysedTrack], index: pd.Index, *, root: Path) -> pd.DataFrame:
    """FMA's (group, field) columns, sorted like FMA's; album fields empty without a tag."""
    # Blank artists are keyed by their file: an id each, never one shared id.
    artist_keys = [t.artist or ("file", str(t.path)) for t in tracks]
    artist_ids = _ids_by_first_appearance(artist_keys)
    album_keys = [(t.artist, t.album) if t.album else None for t in tracks]
    album_ids = _ids_by_first_appearance([k for k in album_keys if k is not None])
    columns = {
        ("album", "id"): pd.array([album_ids[k] if k else None for k in album_keys], dtype="Int64"),
        ("album", "title"): [t.album for t in tracks],
        ("artist", "id"): [artist_ids[key] for key in artist_keys],
        ("artist", "name"): [t.artist or None for t in tracks],
        ("track", "duration"): [round(t.duration, 3) for t in tracks],
        ("track", "file"): [relative_file(t.path, root=root) for t in tracks],
        ("track", "fingerprint"): [t.fingerprint or file_fingerprint(t.path) for t in tracks],
        ("track", "genre_top"): [None] * len(tracks),  # unknown: audio does not say
        ("track", "title"): [t.title for t in tracks],
    }
    table = pd.DataFrame({k: pd.Series(v, index=index) for k, v in columns.items()})
    table.columns = pd.MultiIndex.from_tuples(columns)
    return table


def relative_file(path: Path, *, root: Path) -> str:
    """The file's path below root, with forward slashes (the same on every system)."""
    return Path(path).resolve().relative_to(root).as_posix()


def _ids_by_first_appearance(keys: list) -> dict:
    ids: dict = {}
    for key in keys:
        ids.setdefault(key, len(ids) + 1)
    return ids


def _genres_table() -> pd.DataFrame:
    """FMA's 16 top-level genres with no tracks yet.

    Listing the top-level genres (rather than a header-only file) lets a later
    edit of tracks.csv give songs a genre_top that the catalogue knows.
    """
    rows = sorted((gid, 0, 0, title, gid) for gid, title, _ in TOP_GENRES)
    return pd.DataFrame(rows, columns=list(GENRE_COLUMNS))
