"""Exact L2 search at the memory-bandwidth limit: one BLAS pass over the stored vectors.

The `flat` kind and the approximate kinds' exact fallback search here. A query's
nearest rows are chosen by ||x||^2 - 2 x.q (precomputed squared norms, one
matrix-vector or matrix-matrix product per row chunk, `argpartition`), and the
chosen few get their distances computed directly as sum((x - q)^2), so the
answer is ranked by exact float32 distances. Filters are a boolean mask of the
rows allowed per query; a mask passing few rows gathers just those rows.

The scanned copy may be smaller than the vectors (`store`): float16 or 8-bit
scalar-quantised codes (FAISS `IndexScalarQuantizer`), scanned for a pool of
`refine` x k candidates that are then re-ranked with the exact float32 vectors
(a memory-mapped file: only the pool's rows are read). float32 scans the
vectors themselves, memory-mapped from the persisted cache, so several server
processes share one copy in the page cache.

With `bound_dims`, a search first tries lower bounds from a few principal axes
(app/index/bounds.py): where they are tight, a query reads the short points and a
few hundred float32 vectors instead of every row (or every code), and its answer is
exact whatever the store.

    >>> scan = ExactScan(VectorStore(embeddings), store="sq8", refine=4)
    >>> distances, rows = scan.search(queries, k=10, allowed=[mask_or_none, ...])
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Literal

import faiss
import numpy as np

from app.index.bounds import FIT_ROWS, ProjectedBounds

log = logging.getLogger(__name__)

Store = Literal["float32", "float16", "sq8"]
STORES: tuple[str, ...] = ("float32", "float16", "sq8")
SCAN_ELEMENTS = 1 << 22  # rows a lone query scores per step: 16 MB of float32 scores
# Batches: rows scored per step (8 MB of 518-d vectors), and the size up to which a
# matrix-vector product per query beats one matrix-matrix product (measured on 2 cores).
BATCH_STEP_ROWS = 4096
GEMV_UP_TO = 3
QUERY_BLOCK = 4096  # queries scanned together at most: bounds the candidates kept per block
GATHER_BELOW = 0.125  # a mask passing fewer than this share of rows gathers them
EXTRA_CANDIDATES = 16  # chosen beyond k by norms - 2 x.q, then ranked by exact distances
QUANTISERS = {"float16": faiss.ScalarQuantizer.QT_fp16, "sq8": faiss.ScalarQuantizer.QT_8bit}
ADD_CHUNK = 65_536
BOUND_MIN_ROWS = 16_384  # fewer rows are scanned whole: a scan of them is quick anyway
BOUND_PROBES = 16  # stored rows searched once the bounds are fitted, to see they are tight
PROBE_K = 10  # neighbours each probe asks for: the service's default k
FEW_ROWS = 4096  # rows read as they come (unsorted): a search's candidates, pages resident


class VectorStore:
    """Exact embeddings by row: a (possibly memory-mapped) base plus rows added at run time.

    The approximate kinds need exact vectors to search a small filtered subset, to
    re-rank IVF-PQ candidates and to answer `embedding_of`; a memory-mapped base
    (persisted embeddings) keeps those in the page cache rather than in the heap.
    """

    def __init__(self, base: np.ndarray):
        self._base = base
        self._added: list[np.ndarray] = []
        self._added_joined: np.ndarray | None = None
        # Set by a quantised store: rows are read from the file, not through the mapping,
        # whose page faults map whole page-cache folios (tens of MB per query measured).
        self.read_through_file = False

    def __len__(self) -> int:
        return len(self._base) + sum(len(a) for a in self._added)

    @property
    def base(self) -> np.ndarray:
        """The rows given at construction (e.g. the memory-mapped persisted embeddings)."""
        return self._base

    @property
    def dim(self) -> int:
        return self._base.shape[1]

    def append(self, vectors: np.ndarray) -> None:
        self._added.append(np.array(vectors, dtype=np.float32))
        self._added_joined = None

    def parts(self) -> list[tuple[int, np.ndarray]]:
        """(first row, vectors) of the base and of the rows added since, for scanning."""
        # A plain ndarray view: numpy's products on a memmap subclass are slower.
        parts = [(0, np.asarray(self._base))] if len(self._base) else []
        if self._added:
            parts.append((len(self._base), self._joined()))
        return parts

    def _joined(self) -> np.ndarray:
        if self._added_joined is None:
            self._added_joined = np.concatenate(self._added)
        return self._added_joined

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows start:stop as a float32 array, read from the file when the base is mapped.

        Reading a memory-mapped base through the mapping would make every page
        resident in this process; a quantised store reads it once to build its codes
        and afterwards touches only the rows it re-ranks.
        """
        if stop <= len(self._base) and isinstance(self._base, np.memmap) and self._base.filename:
            row_bytes = self._base.shape[1] * self._base.itemsize
            out = np.empty((stop - start, self._base.shape[1]), dtype=self._base.dtype)
            with open(self._base.filename, "rb") as f:
                f.seek(self._base.offset + start * row_bytes)
                f.readinto(out.data.cast("B"))
            return out.astype(np.float32, copy=False)
        if stop <= len(self._base):
            return np.asarray(self._base[start:stop], dtype=np.float32)
        return self.take(np.arange(start, stop))

    def _pread(self, filename: str, rows: np.ndarray) -> np.ndarray:
        base = self._base
        assert isinstance(base, np.memmap)
        row_bytes = base.shape[1] * base.itemsize
        out = np.empty((len(rows), base.shape[1]), dtype=base.dtype)
        fd = os.open(filename, os.O_RDONLY)
        try:
            for i, row in enumerate(rows.tolist()):
                data = os.pread(fd, row_bytes, base.offset + row * row_bytes)
                out[i] = np.frombuffer(data, dtype=base.dtype)
        finally:
            os.close(fd)
        return out

    def take(self, rows: np.ndarray, *, from_file: bool | None = None) -> np.ndarray:
        """Vectors of the given rows, in that order, as an in-memory float32 array; read
        from a mapped base's file with `from_file` (default: `read_through_file`)."""
        rows = np.asarray(rows, dtype=np.int64)
        filename = getattr(self._base, "filename", None)
        from_file = self.read_through_file if from_file is None else from_file
        read_through = bool(from_file and filename)
        in_base = rows < len(self._base)
        if len(rows) <= FEW_ROWS and not read_through and in_base.all():
            # A search's few rows in one step; a plain ndarray view: indexing the memmap
            # subclass costs more than the copy.
            return np.asarray(np.asarray(self._base)[rows], dtype=np.float32)
        out = np.empty((len(rows), self._base.shape[1]), dtype=np.float32)
        # Sorted reads keep a memory-mapped base's disk access sequential.
        order = np.argsort(rows[in_base], kind="stable")
        wanted = rows[in_base][order]
        if read_through:
            out[np.flatnonzero(in_base)[order]] = self._pread(str(filename), wanted)
        else:
            # A plain ndarray view: indexing the memmap subclass costs more than the copy.
            out[np.flatnonzero(in_base)[order]] = np.asarray(self._base)[wanted]
        if not in_base.all():
            out[~in_base] = self._joined()[rows[~in_base] - len(self._base)]
        return out


class FileRows:
    """A VectorStore's rows indexed as an array, `rows[i:j]` or `rows[positions]`, but read
    from the file when its base is memory-mapped: what an index build reads (every row
    once, a training sample) then stays out of the process, 2 GB at a million songs."""

    def __init__(self, store: VectorStore):
        self.store = store
        self.shape = (len(store), store.dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                raise ValueError("FileRows reads contiguous slices only")
            return self.store.read(start, stop)
        return self.store.take(np.asarray(key), from_file=True)


class ExactScan:
    """k nearest rows of a VectorStore by exact L2, for many queries with a mask each.

    Not thread-safe against `append`: the owning index holds its write lock for that.
    """

    def __init__(
        self,
        vectors: VectorStore,
        *,
        store: Store = "float32",
        refine: int = 4,
        chunk: int | None = None,
        bound_dims: int | None = None,
        bound_min_rows: int = BOUND_MIN_ROWS,
    ):
        """chunk: most rows scored per step (tests cross chunk boundaries with small ones).
        bound_dims: principal axes of the lower bounds, None: none; they are fitted once
        `bound_min_rows` rows are stored. With a quantised store, the few rows they pass
        are read from the float32 vectors (the file) and the codes serve the scans."""
        if store not in STORES:
            raise ValueError(f"store must be one of {', '.join(STORES)}: {store!r}")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be at least 1 row: {chunk}")
        self.vectors = vectors
        self.store = store
        self.refine = refine
        self.chunk = chunk
        self._norms = np.empty(0, dtype=np.float32)
        # Scans take turns over memory: BLAS spreads one product over every core, and
        # concurrent ones thrashed (flat, coalescing off, 2 cores: 16 req/s at 8
        # connections and 4 at 32, against 50 at one; 45 and 47 taking turns). A turn is
        # one block's product or one search of the codes, so a background batch (the
        # scorings' build) holds it briefly.
        self._scanning = threading.Lock()
        self._codes: faiss.IndexScalarQuantizer | None = None
        if store != "float32":
            self._codes = faiss.IndexScalarQuantizer(vectors.dim, QUANTISERS[store])
            vectors.read_through_file = True  # only the re-ranked rows become resident
        self._bounds: ProjectedBounds | None = None
        self._bound_min_rows = bound_min_rows
        if bound_dims is not None and bound_dims < vectors.dim:
            self._bounds = ProjectedBounds(vectors.dim, dims=bound_dims)
        self._index_rows(0)

    def __len__(self) -> int:
        return len(self._norms)

    @property
    def bounded(self) -> bool:
        """Whether dense searches try the lower bounds first (fitted, and tight)."""
        return self._bounds is not None and self._bounds.fitted

    def appended(self) -> None:
        """Take in the rows appended to the VectorStore since the last call."""
        self._index_rows(len(self._norms))

    def _index_rows(self, start: int) -> None:
        fitting = self._fit_bounds_if_due(start)
        bounds = self._bounds if self._bounds is not None and self._bounds.fitted else None
        for first, part in self.vectors.parts():
            for lo in range(max(start - first, 0), len(part), ADD_CHUNK):
                chunk = self.vectors.read(first + lo, first + min(lo + ADD_CHUNK, len(part)))
                self._norms = np.concatenate([self._norms, np.einsum("ij,ij->i", chunk, chunk)])
                if self._codes is not None:
                    if not self._codes.is_trained:  # per-dimension ranges from the first rows
                        self._codes.train(chunk)
                    self._codes.add(chunk)
                if bounds is not None:  # the same read serves the short points
                    bounds.add(chunk)
        if fitting and not self._bounds_tight():
            self._bounds = None

    def _fit_bounds_if_due(self, start: int) -> bool:
        """Fit the bounds' axes once enough rows are stored, on rows spread over them
        (later rows reuse the axes), and give short points to the `start` rows indexed
        before; whether it fitted them now."""
        bounds = self._bounds
        if bounds is None or bounds.fitted or len(self.vectors) < self._bound_min_rows:
            return False
        n = len(self.vectors)
        spread = np.unique(np.linspace(0, n - 1, min(n, FIT_ROWS)).astype(np.int64))
        # Read from the file: through a mapping, every page touched would stay resident.
        bounds.fit(self.vectors.take(spread, from_file=True))
        for lo in range(0, start, ADD_CHUNK):
            bounds.add(self.vectors.read(lo, min(lo + ADD_CHUNK, start)))
        return True

    def _bounds_tight(self) -> bool:
        """Whether the bounds answer most probes: where they are loose (a space without
        dominant axes, e.g. z-scored features: 47 axes held 62% of the demo catalogue's
        variance, and at least 20,000 rows passed a query for 26), every query would pay
        for them and then scan every row anyway."""
        probes = self.vectors.take(np.linspace(0, len(self) - 1, BOUND_PROBES).astype(np.int64))
        pool = PROBE_K + EXTRA_CANDIDATES
        answered = sum(self._bounded(p, None, PROBE_K, pool) is not None for p in probes)
        log.info(
            "exact search: lower bounds from %d axes answered %d of %d probes%s",
            self._bounds.dims if self._bounds else 0,
            answered,
            len(probes),
            "" if 2 * answered >= len(probes) else "; too loose, every query scans every row",
        )
        return 2 * answered >= len(probes)

    @property
    def scanned_bytes(self) -> int:
        """Bytes one query reads: the scanned copy (the float32 vectors or the codes)."""
        if self._codes is None:
            return len(self) * self.vectors.dim * 4
        return self._codes.ntotal * self._codes.code_size

    def search(
        self,
        queries: np.ndarray,
        *,
        k: int,
        allowed: list[np.ndarray | None],
        bounds: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(squared distances, rows), each (len(queries), k), nearest first, inf / -1 padded.

        allowed[q] is query q's mask of rows that may be returned, or None for all.
        bounds=False scans without trying the lower bounds (`search_bounded` found them
        too loose for these queries).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if len(queries) > QUERY_BLOCK:
            blocks = [
                self.search(
                    queries[lo : lo + QUERY_BLOCK],
                    k=k,
                    allowed=allowed[lo : lo + QUERY_BLOCK],
                    bounds=bounds,
                )
                for lo in range(0, len(queries), QUERY_BLOCK)
            ]
            return np.concatenate([d for d, _ in blocks]), np.concatenate([r for _, r in blocks])
        n = len(self)
        pool = k + EXTRA_CANDIDATES if self._codes is None else max(k * self.refine, k + 32)
        candidates: list[np.ndarray] = [np.empty(0, np.int64)] * len(queries)
        dense = []
        for q, mask in enumerate(allowed):
            if mask is not None and mask.sum() < GATHER_BELOW * n:
                candidates[q] = self._gathered(queries[q], np.flatnonzero(mask), pool)
            else:
                dense.append(q)
        if dense and bounds and self.bounded:
            unbounded = []
            for q in dense:
                rows = self._bounded(queries[q], allowed[q], k, pool)
                if rows is None:
                    unbounded.append(q)
                else:
                    candidates[q] = rows
            dense = unbounded
        if dense:
            found = (
                self._scanned(queries[dense], [allowed[q] for q in dense], pool)
                if self._codes is None
                else self._quantised(queries[dense], [allowed[q] for q in dense], pool)
            )
            for q, rows in zip(dense, found, strict=True):
                candidates[q] = rows
        return self._ranked(queries, candidates, k)

    def search_bounded(
        self, query: np.ndarray, *, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """`search` of one query by its lower bounds alone, or None where they are too
        loose (or not fitted) and only a scan of every row would answer it."""
        query = np.ascontiguousarray(query, dtype=np.float32)
        if not self.bounded or (allowed is not None and allowed.sum() < GATHER_BELOW * len(self)):
            return None
        pool = k + EXTRA_CANDIDATES
        rows = self._bounded(query, allowed, k, pool)
        return None if rows is None else self._ranked(query[None], [rows], k)

    def _bounded(
        self, query: np.ndarray, mask: np.ndarray | None, k: int, pool: int
    ) -> np.ndarray | None:
        """Candidates holding the k nearest, from the lower bounds; None where they are too
        loose to beat a scan (more rows pass than a gather of them is worth)."""
        assert self._bounds is not None

        def exact(rows: np.ndarray) -> np.ndarray:
            diff = self.vectors.take(rows).astype(np.float64) - query
            return np.einsum("ij,ij->i", diff, diff)

        most = int(GATHER_BELOW * len(self))
        return self._bounds.candidates(query, k=k, pool=pool, mask=mask, most=most, exact=exact)

    def _scanned(
        self, queries: np.ndarray, masks: list[np.ndarray | None], pool: int
    ) -> list[np.ndarray]:
        """Each query's `pool` best rows by ||x||^2 - 2 x.q over every row (masked)."""
        # A lone query scans in one matrix-vector product; a batch in blocks of rows,
        # each query's best of a block picked while its scores are fresh in cache. The
        # whole matrix at once cost a batch of 8 a fifth more (OpenBLAS packs it first).
        rows_per_step = SCAN_ELEMENTS if len(queries) == 1 else BATCH_STEP_ROWS
        step = self._step(max(rows_per_step, pool))
        masked = [q for q, mask in enumerate(masks) if mask is not None]
        kept_rows, kept_scores = [], []
        for first, part in self.vectors.parts():
            for lo in range(0, len(part), step):
                chunk = part[lo : lo + step]
                rows = slice(first + lo, first + lo + len(chunk))
                with self._scanning:  # one product at a time, each over every core
                    scores = self._chunk_scores(chunk, queries, self._norms[rows])
                for q in masked:
                    scores[q, ~masks[q][rows]] = np.inf  # type: ignore[index]
                top = _best_per_row(scores, pool)
                kept_rows.append(rows.start + top)
                kept_scores.append(np.take_along_axis(scores, top, axis=1))
        if not kept_rows:
            return [np.empty(0, np.int64)] * len(queries)
        rows_all = np.concatenate(kept_rows, axis=1)  # (queries, candidates)
        scores_all = np.concatenate(kept_scores, axis=1)
        best = _best_per_row(scores_all, pool)  # of every block's best: the pool overall
        rows_all = np.take_along_axis(rows_all, best, axis=1)
        finite = np.isfinite(np.take_along_axis(scores_all, best, axis=1))
        return [rows_all[q, finite[q]] for q in range(len(queries))]

    @staticmethod
    def _chunk_scores(chunk: np.ndarray, queries: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """(queries, rows) of ||x||^2 - 2 x.q for one block of rows: the one pass over memory,
        a matrix-vector product for a lone query. Query-major, so that each query's best
        are picked along contiguous memory."""
        if len(queries) <= GEMV_UP_TO:
            scores = np.empty((len(queries), len(chunk)), dtype=np.float32)
            for q, query in enumerate(queries):
                np.matmul(chunk, query, out=scores[q])
        else:
            scores = np.ascontiguousarray((chunk @ queries.T).T)
        scores *= -2.0
        scores += norms[None, :]
        return scores

    def _step(self, rows: int) -> int:
        return rows if self.chunk is None else min(rows, self.chunk)

    def _gathered(self, query: np.ndarray, subset: np.ndarray, pool: int) -> np.ndarray:
        """The `pool` best of a few allowed rows, read from the float32 vectors directly."""
        kept = []
        step = self._step(max(SCAN_ELEMENTS // 8, pool))
        for lo in range(0, len(subset), step):
            rows = subset[lo : lo + step]
            scores = self._norms[rows] - 2.0 * (self.vectors.take(rows) @ query)
            kept.append(rows[_smallest(scores, pool)])
        return np.concatenate(kept) if kept else np.empty(0, np.int64)

    def _quantised(
        self, queries: np.ndarray, masks: list[np.ndarray | None], pool: int
    ) -> list[np.ndarray]:
        """Each query's `pool` best rows by distance to the quantised codes."""
        assert self._codes is not None
        found: list[np.ndarray] = [np.empty(0, np.int64)] * len(queries)
        unmasked = [q for q, m in enumerate(masks) if m is None]
        if unmasked:  # one call: FAISS spreads the queries over its threads
            with self._scanning:
                _, rows = self._codes.search(queries[unmasked], pool)
            for q, r in zip(unmasked, rows, strict=True):
                found[q] = r[r >= 0]
        for q, mask in enumerate(masks):
            if mask is not None:
                bits = np.packbits(mask, bitorder="little")  # alive through the search
                params = faiss.SearchParameters(
                    sel=faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
                )
                with self._scanning:
                    _, rows = self._codes.search(queries[q : q + 1], pool, params=params)
                found[q] = rows[0][rows[0] >= 0]
                del bits
        return found

    def _ranked(
        self, queries: np.ndarray, candidates: list[np.ndarray], k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest candidates of each query by sum((x - q)^2) over float32 vectors."""
        distances = np.full((len(queries), k), np.inf, dtype=np.float32)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        for q, found in enumerate(candidates):
            found = np.unique(found)  # sorted: ties keep the lower row, as FAISS does
            if len(found) == 0:
                continue
            diff = self.vectors.take(found) - queries[q]
            exact = np.einsum("ij,ij->i", diff, diff)
            best = np.argsort(exact, kind="stable")[:k]
            distances[q, : len(best)], rows[q, : len(best)] = exact[best], found[best]
        return distances, rows


def _best_per_row(scores: np.ndarray, m: int) -> np.ndarray:
    """Column positions of each row's m smallest scores (unordered), all when m >= columns."""
    if scores.shape[1] <= m:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.argpartition(scores, m - 1, axis=1)[:, :m]


def _smallest(scores: np.ndarray, m: int) -> np.ndarray:
    """Positions of the m smallest finite scores (unordered)."""
    if len(scores) <= m:
        return np.flatnonzero(np.isfinite(scores))
    positions = np.argpartition(scores, m - 1)[:m]
    return positions[np.isfinite(scores[positions])]
