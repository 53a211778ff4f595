"""Persisted embeddings and approximate indexes, so that a restart does not re-embed.

An entry is valid for exactly one model (its manifest's SHA-256), one state of
the catalogue (the database's catalogue version, which triggers replace on any
change to songs' features, see migration 0002) and one list of song ids. Its
folder name is a digest of those, so a changed model or catalogue simply misses.
On a hit the caller also re-embeds a few random songs from the database and
compares them with the entry (`spot_check`): the fingerprint says the entry
should match, the spot check shows that it does.

    <cache_dir>/<key digest>/manifest.json      what the entry was computed from
                             embeddings.npy     (n_songs, dim) float32, memory-mapped
                             index-<spec>.faiss approximate indexes built from it

Entries are written in a temporary folder and renamed into place, so a crash
never leaves a half-written entry behind a valid name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from app.index.kinds import IndexSpec

log = logging.getLogger("musicsim.cache")

FORMAT = 1
ENTRIES_KEPT = 3  # older entries (other models or catalogue states) are removed
SPOT_CHECK_SONGS = 64
SPOT_CHECK_TOLERANCE = 1e-4  # float32 embeddings of the same input, batched differently


@dataclass(frozen=True)
class CacheKey:
    """What a set of embeddings was computed from."""

    model_sha256: str
    catalogue_version: str
    ids_sha256: str
    n_songs: int
    dim: int
    format: int = FORMAT

    @classmethod
    def of(cls, *, model_sha256: str, catalogue_version: str, ids: np.ndarray, dim: int):
        ids_sha256 = hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes()).hexdigest()
        return cls(model_sha256, catalogue_version, ids_sha256, len(ids), dim)

    def digest(self) -> str:
        return _digest(asdict(self))


def _digest(value: dict) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]


def spec_digest(spec: IndexSpec) -> str:
    # Only what shapes the built index; search-time knobs may change freely.
    built = spec.as_dict()
    search_time_knobs = ("hnsw_ef_search", "ivf_nprobe", "pq_refine", "exact_below")
    flat_only = ("store", "store_refine", "coalesce_wait_ms")  # flat persists no index
    for search_time in search_time_knobs + flat_only:
        built.pop(search_time)
    return _digest(built)[:16]


class EmbeddingCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def load(self, key: CacheKey) -> np.ndarray | None:
        """The entry's embeddings, memory-mapped read-only, or None when absent or unusable."""
        folder = self.root / key.digest()
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            embeddings = np.load(folder / "embeddings.npy", mmap_mode="r")
        except (OSError, ValueError) as exc:
            if folder.exists():
                log.warning("ignoring unreadable embedding cache %s: %s", folder, exc)
            return None
        if manifest.get("key") != asdict(key) or embeddings.shape != (key.n_songs, key.dim):
            log.warning("ignoring embedding cache %s: it does not match its name", folder)
            return None
        os.utime(folder / "manifest.json")  # most recently used: pruned last
        return embeddings

    def compute(self, key: CacheKey, fill: Callable[[np.ndarray], None]) -> np.ndarray | None:
        """Let `fill` write the embeddings into a new entry; returns them memory-mapped.

        When `fill` raises, the error propagates and nothing is left behind.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        folder = self.root / key.digest()
        work = Path(tempfile.mkdtemp(prefix=".writing-", dir=self.root))
        try:
            target = np.lib.format.open_memmap(
                work / "embeddings.npy", mode="w+", dtype=np.float32, shape=(key.n_songs, key.dim)
            )
            fill(target)
            target.flush()
            del target
            manifest = {"key": asdict(key), "indexes": {}}
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
            self._move_into_place(work, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._prune(keep=folder)
        return self.load(key)

    def _move_into_place(self, work: Path, folder: Path) -> None:
        try:
            work.rename(folder)
        except OSError:  # another process wrote the same entry first: theirs is as good
            if not (folder / "manifest.json").exists():
                raise

    def discard(self, key: CacheKey) -> None:
        shutil.rmtree(self.root / key.digest(), ignore_errors=True)

    def load_index(self, key: CacheKey, spec: IndexSpec) -> faiss.Index | None:
        path = self.root / key.digest() / f"index-{spec_digest(spec)}.faiss"
        if not path.exists():
            return None
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            log.warning("ignoring unreadable index %s: %s", path, exc)
            return None
        return index if index.ntotal == key.n_songs else None

    def save_index(self, key: CacheKey, spec: IndexSpec, index: faiss.Index) -> None:
        folder = self.root / key.digest()
        if not folder.is_dir():
            return
        path = folder / f"index-{spec_digest(spec)}.faiss"
        partial = path.with_suffix(f".{os.getpid()}.partial")
        faiss.write_index(index, str(partial))
        partial.replace(path)

    def _prune(self, *, keep: Path) -> None:
        entries = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        by_use = sorted(entries, key=_last_used, reverse=True)
        for stale in by_use[ENTRIES_KEPT:]:
            if stale != keep:
                shutil.rmtree(stale, ignore_errors=True)


def _last_used(folder: Path) -> float:
    try:
        return (folder / "manifest.json").stat().st_mtime
    except OSError:
        return 0.0


def spot_check(
    cached: np.ndarray,
    ids: np.ndarray,
    features_of: Callable[[np.ndarray], np.ndarray],
    embed: Callable[[np.ndarray], np.ndarray],
    *,
    seed: int = 0,
) -> bool:
    """Re-embed a few random songs and compare: True when the cache holds their embeddings."""
    if len(ids) == 0:
        return True
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(ids), size=min(SPOT_CHECK_SONGS, len(ids)), replace=False))
    fresh = embed(features_of(ids[rows]))
    return bool(np.allclose(cached[rows], fresh, rtol=0, atol=SPOT_CHECK_TOLERANCE))
