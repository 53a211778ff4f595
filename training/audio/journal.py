"""The extraction job's results on disk, one line per finished file, kept across runs.

    >>> store = ResultStore(out_dir / ".musicsim-extract")
    >>> key = file_key(path, excerpt_seconds=30.0)
    >>> if key not in store: store.append(key, analyse(path))
    >>> store[key]          # the track's features and tags, or why it was skipped

An append-only journal of JSON lines, flushed and fsynced after each line: a
crash (or a killed job) loses at most the line being written, which the next
open drops. A file is known by its resolved path, size, modification time and
the excerpt analysed, so a changed file or another excerpt length is analysed again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

JOURNAL_NAME = "journal.jsonl"


@dataclass(frozen=True)
class AnalysedTrack:
    """One analysed file: its features (518,) float32 and what tracks.csv says of it."""

    path: Path
    features: np.ndarray
    title: str
    artist: str
    album: str | None
    duration: float  # seconds, the whole file
    fingerprint: str | None = None  # SHA-256 of the file's bytes


Outcome = AnalysedTrack | str  # a track, or the reason the file was skipped
FileKey = tuple[str, int, int, float | None]


def file_key(path: Path, *, excerpt_seconds: float | None) -> FileKey:
    """(resolved path, size, mtime in ns, excerpt): equal only for the same analysis."""
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, excerpt_seconds)


class ResultStore:
    """The journal under `folder`, read whole on opening; not for two jobs at once."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / JOURNAL_NAME
        self._outcomes: dict[FileKey, Outcome] = {}
        if self.path.exists():
            self._read()

    def __contains__(self, key: FileKey) -> bool:
        return key in self._outcomes

    def __getitem__(self, key: FileKey) -> Outcome:
        return self._outcomes[key]

    def __len__(self) -> int:
        return len(self._outcomes)

    def append(self, key: FileKey, outcome: Outcome) -> None:
        """Write one file's outcome and make it durable before returning."""
        line = json.dumps({"key": list(key), **_encode(outcome)}, ensure_ascii=False)
        with self.path.open("a", encoding="utf-8") as journal:
            journal.write(line + "\n")
            journal.flush()
            os.fsync(journal.fileno())
        self._outcomes[key] = outcome

    def _read(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        complete, _, torn = text.rpartition("\n")
        if torn:  # the last line was cut short by a crash: drop it before appending
            with self.path.open("r+b") as journal:
                journal.truncate(len(complete.encode("utf-8")) + (1 if complete else 0))
        for line in complete.splitlines():
            record = json.loads(line)
            path, size, mtime_ns, excerpt = record["key"]
            self._outcomes[(path, size, mtime_ns, excerpt)] = _decode(record)


def _encode(outcome: Outcome) -> dict:
    if isinstance(outcome, str):
        return {"skipped": outcome}
    return {
        "path": str(outcome.path),
        # float32 -> float64 is exact and JSON writes the shortest round-tripping text.
        "features": [float(x) for x in outcome.features],
        "title": outcome.title,
        "artist": outcome.artist,
        "album": outcome.album,
        "duration": outcome.duration,
        "fingerprint": outcome.fingerprint,
    }


def _decode(record: dict) -> Outcome:
    if "skipped" in record:
        return str(record["skipped"])
    return AnalysedTrack(
        path=Path(record["path"]),
        features=np.asarray(record["features"], dtype=np.float32),
        title=record["title"],
        artist=record["artist"],
        album=record["album"],
        duration=float(record["duration"]),
        fingerprint=record.get("fingerprint"),  # absent from journals of earlier versions
    )
