"""A music folder -> analysed tracks with their tags: the scan behind `musicsim library`.

    >>> scan = scan_library(root=Path("~/Music"), state_dir=Path("data/library/music"),
    ...                     jobs=4, excerpt_seconds=30.0, on_file=None)
    >>> scan.tracks, scan.skipped          # LibraryTrack list; (path, reason) pairs

Files are found recursively (hidden ones left out) and analysed by FMA's recipe
through the extraction job (training.audio.extraction): results are kept in its
journal under state_dir, so a re-run analyses only new and changed files (a file
is known by path, size and modification time) and a killed scan loses nothing it
finished. Tags are read on every scan (they are cheap, and edited tags change
the file anyway): title, artist, album, album artist, genre, track number; a file
without a title or artist tag falls back to an "Artist - Title" file name; a file
with neither has no artist (the import gives it an artist of its own). Text is
cleaned of NUL and characters that are not valid UTF-8.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.audio.extraction import (
    STORE_FOLDER,
    LostFile,
    analyse_files,
    file_fingerprint,
    find_audio_files,
    names_from_file_name,
    relative_file,
)
from training.audio.journal import AnalysedTrack, ResultStore, file_key
from training.data.fma import TOP_GENRES

# Tags in mutagen's "easy" names, and the ID3 frames of the same (WAV/AIFF files).
_TAG_FRAMES = {
    "title": "TIT2",
    "artist": "TPE1",
    "album": "TALB",
    "albumartist": "TPE2",
    "genre": "TCON",
    "tracknumber": "TRCK",
}
# Genre tags that plainly name one of FMA's top-level genres under another spelling.
# Anything else stays without a genre rather than being guessed.
_GENRE_SYNONYMS = {
    "hip hop": "Hip-Hop",
    "hiphop": "Hip-Hop",
    "rap": "Hip-Hop",
    "r&b": "Soul-RnB",
    "rnb": "Soul-RnB",
    "r and b": "Soul-RnB",
    "rhythm and blues": "Soul-RnB",
    "soul": "Soul-RnB",
    "electronica": "Electronic",
    "old time": "Old-Time / Historic",
    "historic": "Old-Time / Historic",
    "spoken word": "Spoken",
    "world": "International",
    "easy": "Easy Listening",
}
OnFile = Callable[[Path, str | None], None]


class LibraryError(ValueError):
    """The library root cannot be scanned; the message says why."""


@dataclass(frozen=True)
class LibraryTrack:
    """One analysed file of the library, with what its tags (or its name) say."""

    file: str  # relative to the root, forward slashes
    features: np.ndarray  # (518,) float32
    fingerprint: str  # SHA-256 of the file's bytes
    duration: float
    title: str
    artist: str | None  # None: neither a tag nor the file name names one
    album: str | None = None
    album_artist: str | None = None
    genre: str | None = None  # an FMA top-level genre title, when the tag maps plainly
    genre_tag: str | None = None  # the tag as written
    track_number: int | None = None


@dataclass
class LibraryScan:
    root: Path
    tracks: list[LibraryTrack] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    analysed: int = 0  # files analysed by this scan (the others came from the journal)


def check_root(root: Path) -> Path:
    """The resolved root; LibraryError when it is missing, not a folder or not readable."""
    root = Path(root).expanduser()
    if not root.exists():
        raise LibraryError(f"{root}: no such folder")
    if not root.is_dir():
        raise LibraryError(f"{root}: not a folder")
    if not os.access(root, os.R_OK | os.X_OK):
        raise LibraryError(f"{root}: not readable (permission denied)")
    return root.resolve()


def scan_library(
    *,
    root: Path,
    state_dir: Path,
    jobs: int = 1,
    excerpt_seconds: float | None = 30.0,
    on_file: OnFile | None = None,
) -> LibraryScan:
    """Analyse new and changed files under root (see the module docstring)."""
    root = check_root(root)
    files = find_audio_files(paths=[root])
    store = ResultStore(Path(state_dir) / STORE_FOLDER)
    scan = LibraryScan(root=root)
    keys = [file_key(path, excerpt_seconds=excerpt_seconds) for path in files]
    outcomes: dict[int, AnalysedTrack | str] = {}
    todo = []
    for i, key in enumerate(keys):
        if key in store:
            outcomes[i] = store[key]
            _report(on_file, files[i], outcomes[i])
        else:
            todo.append(i)
    for n, outcome in analyse_files(
        [files[i] for i in todo], jobs=jobs, scheduler=None, excerpt_seconds=excerpt_seconds
    ):
        i = todo[n]
        if isinstance(outcome, LostFile):
            outcomes[i] = outcome.reason
        else:
            store.append(keys[i], outcome)  # durable before it is reported
            outcomes[i] = outcome
        _report(on_file, files[i], outcomes[i])
    scan.analysed = len(todo)
    for i, path in enumerate(files):
        outcome = outcomes[i]
        if isinstance(outcome, str):
            scan.skipped.append((path, outcome))
        else:
            scan.tracks.append(_library_track(path, outcome, root=root))
    return scan


def _report(on_file: OnFile | None, path: Path, outcome: AnalysedTrack | str) -> None:
    if on_file is not None:
        on_file(path, outcome if isinstance(outcome, str) else None)


def _library_track(path: Path, analysed: AnalysedTrack, *, root: Path) -> LibraryTrack:
    tags = read_library_tags(path)
    named_artist, named_title = names_from_file_name(path.stem)
    artist = tags.get("artist") or named_artist or tags.get("albumartist")
    genre_tag = tags.get("genre")
    return LibraryTrack(
        file=relative_file(path, root=root),
        features=analysed.features,
        fingerprint=analysed.fingerprint or file_fingerprint(path),
        duration=analysed.duration,
        title=tags.get("title") or clean_text(named_title) or path.stem,
        artist=clean_text(artist),
        album=tags.get("album"),
        album_artist=tags.get("albumartist"),
        genre=map_genre(genre_tag),
        genre_tag=genre_tag,
        track_number=_track_number(tags.get("tracknumber")),
    )


def read_library_tags(path: Path) -> dict[str, str]:
    """The tags of _TAG_FRAMES that are present and not blank, cleaned; {} when unreadable."""
    import mutagen
    import mutagen.id3

    try:
        audio = mutagen.File(path, easy=True)
    except (mutagen.MutagenError, OSError, ValueError):
        return {}
    if audio is None or audio.tags is None:
        return {}
    tags = {}
    for key, frame in _TAG_FRAMES.items():
        try:
            if isinstance(audio.tags, mutagen.id3.ID3):  # WAV/AIFF: ID3 without the easy view
                values = audio.tags[frame].text if frame in audio.tags else []
            else:
                values = audio.tags.get(key) or []
        except (KeyError, ValueError):
            values = []
        text = clean_text(values[0]) if values else None
        if text:
            tags[key] = text
    return tags


def clean_text(value) -> str | None:
    """Text with NULs and invalid UTF-8 removed and spacing trimmed; None when blank."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "")
    # lone surrogates (undecodable bytes smuggled through by os/mutagen) cannot be stored
    text = text.encode("utf-8", "ignore").decode("utf-8").replace("\ufffd", "")
    text = " ".join(text.split())
    return text or None


def map_genre(tag: str | None) -> str | None:
    """An FMA top-level genre title for a genre tag that plainly names one, else None."""
    if not tag:
        return None
    key = re.sub(r"[\s_\-/]+", " ", tag.casefold()).strip()
    for _, title, _ in TOP_GENRES:
        if key == re.sub(r"[\s_\-/]+", " ", title.casefold()).strip():
            return title
    return _GENRE_SYNONYMS.get(key)


def _track_number(tag: str | None) -> int | None:
    """ "3" or "3/12" -> 3."""
    match = re.match(r"\s*(\d+)", tag or "")
    return int(match.group(1)) if match else None
