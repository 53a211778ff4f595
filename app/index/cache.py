"""Persisted embeddings and approximate indexes, so that a restart does not re-embed.

An entry is valid for exactly one model (its manifest's SHA-256), one state of
the catalogue (the database's catalogue version, which triggers replace on any
change to songs' features, see migration 0002) and one list of song ids. Its
folder name is a digest of those, so a changed model or catalogue simply misses.
On a hit the caller also re-embeds a few random songs from the database and
compares them with the entry (`spot_check`, different songs each start): the
fingerprint says the entry should match, the spot check shows that it does.

    <cache_dir>/<key digest>/manifest.json      what the entry was computed from,
                                                and the SHA-256 of embeddings.npy
                             embeddings.npy     (n_songs, dim) float32, memory-mapped
                             index-<spec>.faiss approximate indexes built from it
                             index-<spec>.faiss.sha256   its SHA-256
                             <name>.npy         per-song arrays derived from the index
                                                (scoring neighbourhoods, app.index.scored)

Entries are written in a temporary folder, fsynced, and renamed into place (the
folder fsynced too), so a crash never leaves a half-written entry behind a valid
name. Loading verifies the whole file against the SHA-256 recorded when it was
written and that every value is finite; an entry that fails (truncated, edited,
bit rot, a NaN) is removed with a warning and recomputed, never served.
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

from app.index.exact import VectorStore
from app.index.kinds import IndexSpec

log = logging.getLogger("musicsim.cache")

# 2: manifests record the SHA-256 of embeddings.npy. 3: embeddings computed in float64
# and rounded (training.model.embed); entries of 2 differ in their last bits, so a song
# posted with its own features would not be at distance exactly 0: they are recomputed.
# 4: embeddings rounded to a 1e-12 grid before the float32 cast (coordinates near 0).
FORMAT = 4
ENTRIES_KEPT = 3  # older entries (other models or catalogue states) are removed
SPOT_CHECK_SONGS = 64
# Exact: embeddings have the same bits however they are batched (training.model.embed),
# so any difference is damage (or another machine's arithmetic: then a rebuild).
SPOT_CHECK_TOLERANCE = 0.0


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
    search_time_knobs = ("hnsw_ef_search", "hnsw_refine", "ivf_nprobe", "pq_refine", "exact_below")
    flat_only = ("store", "store_refine", "coalesce_wait_ms")  # flat persists no index
    for search_time in search_time_knobs + flat_only:
        built.pop(search_time)
    return _digest(built)[:16]


class EmbeddingCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def load(self, key: CacheKey) -> np.ndarray | None:
        """The entry's embeddings, memory-mapped read-only, or None when absent or unusable.

        An unusable entry (unreadable, not matching its name or its checksum, holding a
        value that is not finite) is removed with a warning, so that it is rebuilt.
        """
        folder = self.root / key.digest()
        if not folder.exists():
            return None
        problem = _problem_with(folder, key)
        if problem is not None:
            log.warning("discarding persisted embeddings %s: %s; recomputing", folder, problem)
            self.discard(key)
            return None
        os.utime(folder / "manifest.json")  # most recently used: pruned last
        return np.load(folder / "embeddings.npy", mmap_mode="r")

    def compute(self, key: CacheKey, fill: Callable[[RowsFile], None]) -> np.ndarray:
        """Let `fill` write the embeddings into a new entry; returns them memory-mapped.

        When `fill` raises, the error propagates and nothing is left behind. OSError
        when the entry cannot be written or read back.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        folder = self.root / key.digest()
        work = Path(tempfile.mkdtemp(prefix=".writing-", dir=self.root))
        try:
            with RowsFile(work / "embeddings.npy", (key.n_songs, key.dim)) as target:
                fill(target)
            _fsync(work / "embeddings.npy")
            manifest = {
                "key": asdict(key),
                "embeddings_sha256": _file_sha256(work / "embeddings.npy"),
                "indexes": {},
            }
            (work / "manifest.json").write_text(json.dumps(manifest, indent=2))
            _fsync(work / "manifest.json")
            _fsync(work)
            self._move_into_place(work, folder, key)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._prune(keep=folder)
        embeddings = self.load(key)
        if embeddings is None:
            raise OSError(f"the embeddings just written to {folder} do not read back")
        return embeddings

    def _move_into_place(self, work: Path, folder: Path, key: CacheKey) -> None:
        try:
            work.rename(folder)
        except OSError:
            # Another process wrote the same entry first: theirs is as good, if it is whole.
            if _problem_with(folder, key) is None:
                return
            shutil.rmtree(folder, ignore_errors=True)
            work.rename(folder)
        _fsync(self.root)  # the rename itself survives a power cut

    def discard(self, key: CacheKey) -> None:
        shutil.rmtree(self.root / key.digest(), ignore_errors=True)

    def load_index(self, key: CacheKey, spec: IndexSpec) -> faiss.Index | None:
        path = self.root / key.digest() / f"index-{spec_digest(spec)}.faiss"
        if not path.exists():
            return None
        recorded = path.with_name(path.name + ".sha256")
        try:
            whole = recorded.read_text().strip() == _file_sha256(path)
            index = faiss.read_index(str(path)) if whole else None
        except (OSError, RuntimeError) as exc:
            log.warning("ignoring unreadable index %s: %s", path, exc)
            return None
        if index is None:
            log.warning("ignoring index %s: it does not match its recorded SHA-256", path)
            return None
        return index if index.ntotal == key.n_songs else None

    def save_index(self, key: CacheKey, spec: IndexSpec, index: faiss.Index) -> None:
        folder = self.root / key.digest()
        if not folder.is_dir():
            return
        path = folder / f"index-{spec_digest(spec)}.faiss"
        partial = path.with_suffix(f".{os.getpid()}.partial")
        faiss.write_index(index, str(partial))
        _fsync(partial)
        digest = path.with_name(f"{path.name}.sha256.{os.getpid()}.partial")
        digest.write_text(_file_sha256(partial) + "\n")
        _fsync(digest)
        # The digest first: an index is never in place without the digest that vouches for it.
        digest.replace(path.with_name(path.name + ".sha256"))
        partial.replace(path)
        _fsync(folder)

    def load_array(self, key: CacheKey, name: str) -> np.ndarray | None:
        """A per-song array saved beside the entry's embeddings, or None when absent."""
        path = self.root / key.digest() / f"{name}.npy"
        try:
            array = np.load(path)
        except (OSError, ValueError):
            return None
        return array if len(array) == key.n_songs else None

    def save_array(self, key: CacheKey, name: str, array: np.ndarray) -> None:
        """Keep an array with the entry (written aside, then renamed into place)."""
        folder = self.root / key.digest()
        if not folder.is_dir():
            return
        partial = folder / f"{name}.{os.getpid()}.partial.npy"
        np.save(partial, array)
        partial.replace(folder / f"{name}.npy")

    def _prune(self, *, keep: Path) -> None:
        entries = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        by_use = sorted(entries, key=_last_used, reverse=True)
        for stale in by_use[ENTRIES_KEPT:]:
            if stale != keep:
                shutil.rmtree(stale, ignore_errors=True)


class RowsFile:
    """A new .npy file of float32 rows, filled as an array is, `out[i:j] = rows`, by plain
    writes: through a writable mapping, its dirty pages would count in the process
    (2 GB at a million songs) until written back."""

    def __init__(self, path: Path, shape: tuple[int, int]):
        self.shape = shape
        self._file = open(path, "wb")  # noqa: SIM115 (closed by close / the with block)
        header = {"descr": "<f4", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self._file, header)
        self._data_offset = self._file.tell()
        self._file.truncate(self._data_offset + shape[0] * shape[1] * 4)  # unwritten rows: 0

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, rows: slice, values: np.ndarray) -> None:
        start, stop, step = rows.indices(self.shape[0])
        data = np.ascontiguousarray(values, dtype="<f4")
        if step != 1 or data.shape != (stop - start, self.shape[1]):
            raise ValueError(f"rows {start}:{stop} need shape {(stop - start, self.shape[1])}")
        self._file.seek(self._data_offset + start * self.shape[1] * 4)
        self._file.write(data.data)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RowsFile:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def _problem_with(folder: Path, key: CacheKey) -> str | None:
    """Why an entry cannot be served, or None when it is whole and matches `key`."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        return f"manifest.json is unreadable ({exc})"
    if not isinstance(manifest, dict) or manifest.get("key") != asdict(key):
        return "manifest.json does not match the entry's name"
    path = folder / "embeddings.npy"
    try:
        if manifest.get("embeddings_sha256") != _file_sha256(path):
            return "embeddings.npy does not match the SHA-256 recorded when it was written"
        embeddings = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        return f"embeddings.npy is unreadable ({exc})"
    if embeddings.shape != (key.n_songs, key.dim) or embeddings.dtype != np.float32:
        return f"embeddings.npy holds {embeddings.dtype} {embeddings.shape}"
    bad = _non_finite_rows(embeddings)
    if len(bad):
        return f"{len(bad)} row(s) are not finite (first: {int(bad[0])})"
    return None


def _non_finite_rows(embeddings: np.memmap, *, chunk: int = 16_384) -> np.ndarray:
    """Rows holding NaN or infinity, read from the file a chunk at a time: bounded memory,
    and none of the mapping's pages made resident (2 GB at a million songs)."""
    rows = VectorStore(embeddings)  # its `read` takes rows from the file, not the mapping
    bad = [
        start
        + np.flatnonzero(~np.isfinite(rows.read(start, min(start + chunk, len(rows)))).all(axis=1))
        for start in range(0, len(embeddings), chunk)
    ]
    return np.concatenate(bad) if bad else np.empty(0, dtype=np.int64)


def _file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    seed: int | None = None,
) -> bool:
    """Re-embed a few random songs and compare: True when the cache holds their embeddings.

    Without a seed the songs differ at every start, so that damage the checksum cannot
    see (an entry rewritten whole, checksum included) is found sooner or later.
    """
    if len(ids) == 0:
        return True
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(ids), size=min(SPOT_CHECK_SONGS, len(ids)), replace=False))
    fresh = embed(features_of(ids[rows]))
    return bool(np.allclose(cached[rows], fresh, rtol=0, atol=SPOT_CHECK_TOLERANCE))
